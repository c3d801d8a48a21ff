//! Every protobuf contract of the engine, package `inbox.v1`: the gRPC API (services for managers,
//! clients and admins) and the bus payloads on Kafka. Generated code only; no logic lives here.

#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod inbox {
    pub mod v1 {
        tonic::include_proto!("inbox.v1");
    }
}

pub use inbox::v1;

/// Encoded `FileDescriptorSet` of every contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("inbox_descriptor");
