//! Compiles the protobuf contracts with a vendored compiler (protox): no `protoc` on the machine.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["inbox/v1/bus.proto", "inbox/v1/manager.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("inbox_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
