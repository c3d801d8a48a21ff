//! gRPC server reflection in both versions: `grpc.reflection.v1` (grpcurl, newer tools) and
//! `grpc.reflection.v1alpha` (Google's Python client and several GUI tools speak only that one).

use e2e::{Engine, Stack};
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_reflection_versions_list_the_engine_services() -> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine = Engine::start(&stack).await?;
    let channel = tonic::transport::Channel::from_shared(engine.grpc.clone())?
        .connect()
        .await?;

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient as V1;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest as V1Request, server_reflection_request::MessageRequest as V1Msg,
        server_reflection_response::MessageResponse as V1Resp,
    };
    // One question, its one answer.
    let ask = |question: V1Msg| {
        let channel = channel.clone();
        async move {
            let ask = V1Request {
                host: String::new(),
                message_request: Some(question),
            };
            let mut answers = V1::new(channel)
                .server_reflection_info(futures::stream::iter([ask]))
                .await?
                .into_inner();
            let Some(Ok(answer)) = answers.next().await else {
                anyhow::bail!("no v1 reflection answer");
            };
            anyhow::Ok(answer.message_response)
        }
    };
    let Some(V1Resp::ListServicesResponse(list)) = ask(V1Msg::ListServices(String::new())).await?
    else {
        anyhow::bail!("v1 reflection did not list services");
    };
    let v1: Vec<String> = list.service.into_iter().map(|s| s.name).collect();

    // Each RPC is described, the newest ones too (the descriptor set is built from every proto).
    for (service, wanted) in [
        (
            "AdminService",
            &[
                "GetStats",
                "GetReport",
                "ExportReport",
                "SearchMessages",
                "SimulateSpec",
            ][..],
        ),
        ("ClientService", &["GetAttachment", "ListCommands"][..]),
    ] {
        let symbol = V1Msg::FileContainingSymbol(format!("inbox.v1.{service}"));
        let Some(V1Resp::FileDescriptorResponse(files)) = ask(symbol).await? else {
            anyhow::bail!("v1 reflection did not describe {service}");
        };
        let mut methods = Vec::new();
        for bytes in &files.file_descriptor_proto {
            let file =
                <prost_types::FileDescriptorProto as prost::Message>::decode(bytes.as_slice())?;
            for s in file.service.iter().filter(|s| s.name() == service) {
                methods.extend(s.method.iter().map(|m| m.name().to_owned()));
            }
        }
        for wanted in wanted {
            assert!(
                methods.iter().any(|m| m == wanted),
                "{wanted} missing from {service} {methods:?}"
            );
        }
    }

    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as Alpha;
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest as AlphaRequest,
        server_reflection_request::MessageRequest as AlphaMsg,
        server_reflection_response::MessageResponse as AlphaResp,
    };
    let ask = AlphaRequest {
        host: String::new(),
        message_request: Some(AlphaMsg::ListServices(String::new())),
    };
    let mut answers = Alpha::new(channel)
        .server_reflection_info(futures::stream::iter([ask]))
        .await?
        .into_inner();
    let Some(Ok(answer)) = answers.next().await else {
        anyhow::bail!("no v1alpha reflection answer");
    };
    let Some(AlphaResp::ListServicesResponse(list)) = answer.message_response else {
        anyhow::bail!("v1alpha reflection did not list services");
    };
    let alpha: Vec<String> = list.service.into_iter().map(|s| s.name).collect();

    for services in [&v1, &alpha] {
        for wanted in [
            "inbox.v1.ManagerService",
            "inbox.v1.ClientService",
            "inbox.v1.AdminService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                services.iter().any(|s| s == wanted),
                "{wanted} missing from {services:?}"
            );
        }
    }
    Ok(())
}
