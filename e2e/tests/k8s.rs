//! `k8s/` against the code, offline (no cluster): every overlay renders and validates
//! (`scripts/k8s.sh validate`: the Kubernetes OpenAPI schemas, strict, and the operators' CRD
//! requirements), and nothing in the manifests drifts from what the binaries declare, listen on
//! and use. The real binaries are started with exactly the environment and mounted files a pod of
//! each Deployment (and the migration Job) gets, and must accept it in the overlay's profile.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use platform::settings::{Kind, Setting};
use serde_yaml_ng::Value;

const OVERLAYS: [&str; 2] = ["dev", "production"];

/// `scripts/k8s.sh ARGS` from the workspace root: its stdout, or its whole output as the error.
fn k8s_script(args: &[&str]) -> anyhow::Result<String> {
    let root = platform::workspace_root();
    let out = std::process::Command::new(root.join("scripts/k8s.sh"))
        .args(args)
        .current_dir(&root)
        .output()
        .context("running scripts/k8s.sh")?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    ensure!(
        out.status.success(),
        "scripts/k8s.sh {} failed ({}):\n{stdout}\n{stderr}",
        args.join(" "),
        out.status
    );
    Ok(stdout)
}

/// The overlay's rendered manifests.
fn render(overlay: &str) -> anyhow::Result<Vec<Value>> {
    let text = k8s_script(&["render", overlay])?;
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    ensure!(!docs.is_empty(), "{overlay} renders nothing");
    Ok(docs)
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path)?.as_str()
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn seq<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> + use<'a> {
    let kind = kind.to_owned();
    docs.iter()
        .filter(move |d| s(d, &["kind"]) == Some(kind.as_str()))
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    docs.iter()
        .find(|d| s(d, &["kind"]) == Some(kind) && s(d, &["metadata", "name"]) == Some(name))
        .with_context(|| format!("no {kind} {name} in the rendered manifests"))
}

/// A container of a Deployment or Job, with what its pod gives it.
struct Container<'a> {
    /// `Deployment/inbox-gateway` etc.
    owner: String,
    /// The binary it starts (its command's file name) and that binary's arguments.
    binary: String,
    args: Vec<String>,
    spec: &'a Value,
    pod: &'a Value,
}

fn containers(docs: &[Value]) -> anyhow::Result<Vec<Container<'_>>> {
    let mut out = Vec::new();
    for d in docs {
        let kind = s(d, &["kind"]).unwrap_or_default();
        if kind != "Deployment" && kind != "Job" {
            continue;
        }
        let owner = format!("{kind}/{}", s(d, &["metadata", "name"]).unwrap_or_default());
        let pod = get(d, &["spec", "template", "spec"]).context("a pod template")?;
        for c in seq(pod, &["containers"]) {
            let command: Vec<String> = seq(c, &["command"])
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            let Some((program, args)) = command.split_first() else {
                // The dev overlay's dependencies run their images' own entry points.
                continue;
            };
            let Some(binary) = program.strip_prefix("/usr/local/bin/") else {
                continue;
            };
            out.push(Container {
                owner: owner.clone(),
                binary: binary.to_owned(),
                args: args.to_vec(),
                spec: c,
                pod,
            });
        }
    }
    Ok(out)
}

/// Where a setting's value comes from in a container.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Value(String),
    Secret { name: String, optional: bool },
}

/// The container's `INBOX_*` environment: `envFrom` ConfigMaps first, then `env` (which wins, as
/// in a pod).
fn environment(docs: &[Value], c: &Container<'_>) -> anyhow::Result<BTreeMap<String, Source>> {
    let mut env = BTreeMap::new();
    for from in seq(c.spec, &["envFrom"]) {
        let name = s(from, &["configMapRef", "name"])
            .with_context(|| format!("{}: envFrom other than a ConfigMap", c.owner))?;
        let map = named(docs, "ConfigMap", name)?;
        for (k, v) in get(map, &["data"])
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                bail!("ConfigMap {name}: a key or value that is not a string");
            };
            env.insert(k.to_owned(), Source::Value(v.to_owned()));
        }
    }
    for e in seq(c.spec, &["env"]) {
        let name = s(e, &["name"]).context("an env entry without a name")?;
        let source = if let Some(v) = s(e, &["value"]) {
            Source::Value(v.to_owned())
        } else if let Some(r) = get(e, &["valueFrom", "secretKeyRef"]) {
            Source::Secret {
                name: format!(
                    "{}/{}",
                    s(r, &["name"]).unwrap_or_default(),
                    s(r, &["key"]).unwrap_or_default()
                ),
                optional: get(r, &["optional"]).and_then(Value::as_bool) == Some(true),
            }
        } else if let Some(r) = get(e, &["valueFrom", "configMapKeyRef"]) {
            let map = named(docs, "ConfigMap", s(r, &["name"]).unwrap_or_default())?;
            let key = s(r, &["key"]).unwrap_or_default();
            Source::Value(
                s(map, &["data", key])
                    .with_context(|| format!("{}: {name} names a missing key", c.owner))?
                    .to_owned(),
            )
        } else {
            bail!("{}: {name} has neither a value nor a reference", c.owner);
        };
        env.insert(name.to_owned(), source);
    }
    Ok(env)
}

/// The mount path of every volume of the container, with the volume's definition.
fn mounts<'a>(c: &Container<'a>) -> anyhow::Result<Vec<(String, &'a Value)>> {
    let mut out = Vec::new();
    for m in seq(c.spec, &["volumeMounts"]) {
        let name = s(m, &["name"]).unwrap_or_default();
        let volume = seq(c.pod, &["volumes"])
            .iter()
            .find(|v| s(v, &["name"]) == Some(name))
            .with_context(|| format!("{}: mounts {name}, which the pod does not have", c.owner))?;
        out.push((s(m, &["mountPath"]).unwrap_or_default().to_owned(), volume));
    }
    Ok(out)
}

/// The files a setting's value names: a path setting's value, and the certificate files in a
/// PostgreSQL URL's query.
fn files_named(
    declared: &BTreeMap<&str, (&Setting, Vec<&str>)>,
    name: &str,
    value: &str,
) -> Vec<String> {
    if declared
        .get(name)
        .is_some_and(|(s, _)| s.kind == Kind::Path)
    {
        return vec![value.to_owned()];
    }
    if name == "INBOX_DATABASE_URL" {
        return value
            .split_once('?')
            .map(|(_, q)| q.split('&'))
            .into_iter()
            .flatten()
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| matches!(*k, "sslrootcert" | "sslcert" | "sslkey"))
            .map(|(_, v)| v.to_owned())
            .collect();
    }
    Vec::new()
}

#[test]
fn every_overlay_renders_and_validates_against_the_kubernetes_and_operator_schemas()
-> anyhow::Result<()> {
    for overlay in OVERLAYS {
        let out = k8s_script(&["validate", overlay])?;
        assert!(out.contains(&format!("k8s: {overlay} valid")), "{out}");
    }
    Ok(())
}

#[test]
fn the_base_holds_the_repositorys_spec_and_channels_files() -> anyhow::Result<()> {
    let root = platform::workspace_root();
    for file in ["workflows.yaml", "channels.yaml"] {
        let ours = std::fs::read_to_string(root.join(file))?;
        let copy = std::fs::read_to_string(root.join("k8s/base").join(file))?;
        assert!(
            ours == copy,
            "k8s/base/{file} differs from {file}: copy it (`cp {file} k8s/base/`), the ConfigMap is generated from the copy"
        );
    }
    Ok(())
}

#[test]
fn every_setting_the_manifests_set_is_one_the_started_binary_declares() -> anyhow::Result<()> {
    let declared = common::declarations();
    for overlay in OVERLAYS {
        let docs = render(overlay)?;
        let found = containers(&docs)?;
        ensure!(
            found.len() >= 4,
            "{overlay}: the three services and the Job"
        );
        for c in &found {
            for name in environment(&docs, c)?.keys() {
                let services = declared
                    .get(name.as_str())
                    .map(|(_, services)| services.as_slice())
                    .unwrap_or_default();
                // One ConfigMap feeds every service: a setting of another service is ignored,
                // but each name must be some service's, and what `env` sets the binary's own.
                assert!(
                    !services.is_empty(),
                    "{overlay} {}: {name} is not a setting of any service",
                    c.owner
                );
                let set_in_env = seq(c.spec, &["env"])
                    .iter()
                    .any(|e| s(e, &["name"]) == Some(name));
                assert!(
                    !set_in_env || services.contains(&c.binary.as_str()),
                    "{overlay} {}: {name} is set for {}, which does not read it (read by {services:?})",
                    c.owner,
                    c.binary
                );
            }
        }
    }
    Ok(())
}

#[test]
fn every_file_a_setting_names_is_mounted_in_the_pod() -> anyhow::Result<()> {
    let declared = common::declarations();
    for overlay in OVERLAYS {
        let docs = render(overlay)?;
        for c in &containers(&docs)? {
            let mounted = mounts(c)?;
            for (name, source) in environment(&docs, c)? {
                let Source::Value(value) = source else {
                    continue;
                };
                // The shared ConfigMap names files of the other services too: only what this
                // binary reads must be in its pod.
                let reads = declared
                    .get(name.as_str())
                    .is_some_and(|(_, services)| services.contains(&c.binary.as_str()));
                if !reads {
                    continue;
                }
                for file in files_named(&declared, &name, &value) {
                    assert!(
                        mounted
                            .iter()
                            .any(|(at, _)| Path::new(&file).starts_with(at)),
                        "{overlay} {}: {name} names {file}, which no volume of the pod holds",
                        c.owner
                    );
                }
            }
        }
    }
    Ok(())
}

/// A stand-in of the right shape for a secret the cluster would hold.
fn stand_in(setting: &str) -> String {
    match setting {
        "INBOX_AFC_KEY" | "INBOX_DATA_KEY" => "a".repeat(64),
        _ => format!(
            "stand-in-for-a-k8s-secret-{}",
            uuid::Uuid::new_v4().simple()
        ),
    }
}

/// The container's environment for a run outside the cluster: secrets by stand-ins (optional
/// ones left out, as an absent key leaves them), and each mounted volume as a local directory
/// (`local`) holding its files: the `inbox-config` ConfigMap's own, a test CA for every other item
/// (`ca`: the CAs the production overlay mounts), so a setting naming a mounted file names a real
/// one.
fn runnable_env(
    docs: &[Value],
    c: &Container<'_>,
    local: &Path,
    ca: &[u8],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut moved = Vec::new();
    for (i, (at, volume)) in mounts(c)?.into_iter().enumerate() {
        let dir = local.join(format!("volume-{i}"));
        std::fs::create_dir_all(&dir)?;
        if let Some(name) = s(volume, &["configMap", "name"])
            && name.starts_with("inbox-config")
        {
            let map = named(docs, "ConfigMap", name)?;
            for (k, v) in get(map, &["data"])
                .and_then(Value::as_mapping)
                .into_iter()
                .flatten()
            {
                std::fs::write(
                    dir.join(k.as_str().unwrap_or_default()),
                    v.as_str().unwrap_or_default(),
                )?;
            }
        } else {
            let items =
                get(volume, &["secret", "items"]).or_else(|| get(volume, &["configMap", "items"]));
            for item in items.and_then(Value::as_sequence).into_iter().flatten() {
                std::fs::write(dir.join(s(item, &["path"]).unwrap_or_default()), ca)?;
            }
        }
        moved.push((at, dir.display().to_string()));
    }
    let mut out = Vec::new();
    for (name, source) in environment(docs, c)? {
        let value = match source {
            // Through placeholders, so that a local directory (under /tmp) is never taken for
            // a mount path (the pods mount an emptyDir at /tmp).
            Source::Value(v) => {
                let marked = moved.iter().enumerate().fold(v, |v, (i, (at, _))| {
                    v.replace(&format!("{at}/"), &format!("\u{0}{i}\u{0}"))
                });
                moved.iter().enumerate().fold(marked, |v, (i, (_, dir))| {
                    v.replace(&format!("\u{0}{i}\u{0}"), &format!("{dir}/"))
                })
            }
            Source::Secret { optional: true, .. } => continue,
            Source::Secret { .. } => stand_in(&name),
        };
        out.push((name, value));
    }
    Ok(out)
}

#[tokio::test]
async fn each_binary_accepts_in_its_profile_exactly_what_its_pod_is_given() -> anyhow::Result<()> {
    // One test CA stands for every CA a pod mounts.
    let ca_dir = tempdir("k8s-ca")?;
    let ca = std::fs::read(e2e::certs::make_certificates(&ca_dir)?.0)?;
    for overlay in OVERLAYS {
        let docs = render(overlay)?;
        let profile = if overlay == "production" {
            "Production"
        } else {
            "Dev"
        };
        for c in &containers(&docs)? {
            let local = tempdir(&format!("k8s-{overlay}-{}", c.binary))?;
            let env = runnable_env(&docs, c, &local, &ca)?;
            let out = tokio::process::Command::new(e2e::binary(&c.binary)?)
                .arg("--print-config")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("RUST_LOG", "warn")
                .env("NO_COLOR", "1")
                .current_dir(std::env::temp_dir())
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .output()
                .await?;
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert!(
                out.status.success()
                    && stdout.contains(&format!(
                        "# {}: accepted in the {profile} profile",
                        c.binary
                    )),
                "{overlay} {}: `{} --print-config` with the pod's environment:\n{stdout}\n{stderr}",
                c.owner,
                c.binary
            );
            std::fs::remove_dir_all(&local)?;
        }
    }
    std::fs::remove_dir_all(&ca_dir)?;
    Ok(())
}

/// A generated ConfigMap is named `<name>-<hash>`.
fn named_prefix<'a>(docs: &'a [Value], kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    of_kind(docs, kind)
        .find(|d| {
            s(d, &["metadata", "name"])
                .and_then(|n| n.strip_prefix(name))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
        })
        .with_context(|| format!("no {kind} {name}"))
}

fn tempdir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn port_of(addr: &str) -> Option<u64> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// The listener settings of each service, with the container port name they belong to.
const LISTENERS: [(&str, &str, &str); 4] = [
    ("communication", "INBOX_HTTP_ADDR", "http"),
    ("communication", "INBOX_COMMUNICATION_OPS_ADDR", "ops"),
    ("gateway", "INBOX_GRPC_ADDR", "grpc"),
    ("gateway", "INBOX_GATEWAY_OPS_ADDR", "ops"),
];

#[test]
fn ports_probes_and_grace_periods_match_what_the_services_do() -> anyhow::Result<()> {
    let ops_routes =
        std::fs::read_to_string(platform::workspace_root().join("platform/src/ops.rs"))?;
    for overlay in OVERLAYS {
        let docs = render(overlay)?;
        for c in containers(&docs)?
            .iter()
            .filter(|c| c.owner.starts_with("Deployment/"))
        {
            let env = environment(&docs, c)?;
            let value = |k: &str| match env.get(k) {
                Some(Source::Value(v)) => Some(v.clone()),
                _ => None,
            };
            let ports: BTreeMap<&str, u64> = seq(c.spec, &["ports"])
                .iter()
                .filter_map(|p| Some((s(p, &["name"])?, get(p, &["containerPort"])?.as_u64()?)))
                .collect();
            let ops_setting = format!("INBOX_{}_OPS_ADDR", c.binary.to_uppercase());
            let listeners = LISTENERS
                .iter()
                .filter(|(svc, _, _)| *svc == c.binary)
                .map(|(_, k, p)| (k.to_string(), *p))
                .chain([(ops_setting, "ops")]);
            for (setting, port) in listeners {
                let addr = value(&setting)
                    .with_context(|| format!("{overlay} {}: {setting} is not set", c.owner))?;
                assert!(
                    addr.starts_with("0.0.0.0:"),
                    "{overlay} {}: {setting}={addr} is not reachable from outside the pod",
                    c.owner
                );
                assert_eq!(
                    port_of(&addr),
                    ports.get(port).copied(),
                    "{overlay} {}: {setting}={addr} but the container port {port:?} differs",
                    c.owner
                );
            }
            for (probe, path) in [
                ("startupProbe", "/livez"),
                ("livenessProbe", "/livez"),
                ("readinessProbe", "/readyz"),
            ] {
                let got = s(c.spec, &[probe, "httpGet", "path"]);
                assert_eq!(got, Some(path), "{overlay} {}: {probe}", c.owner);
                assert!(
                    ops_routes.contains(&format!(".route(\"{path}\""))
                        || ops_routes.contains(&format!("\"{path}\"")),
                    "{path} is not a route of the ops listener (platform/src/ops.rs)"
                );
                assert_eq!(
                    s(c.spec, &[probe, "httpGet", "port"]),
                    Some("ops"),
                    "{overlay} {}: {probe} must ask the ops listener",
                    c.owner
                );
            }
            let shutdown: u64 = value("INBOX_SHUTDOWN_SECS")
                .context("INBOX_SHUTDOWN_SECS")?
                .parse()?;
            let grace = get(c.pod, &["terminationGracePeriodSeconds"])
                .and_then(Value::as_u64)
                .unwrap_or(30);
            assert!(
                grace > shutdown,
                "{overlay} {}: terminationGracePeriodSeconds {grace} must exceed INBOX_SHUTDOWN_SECS {shutdown}",
                c.owner
            );
        }
        // Every Service port leads to a named container port; every Ingress to a Service port.
        for svc in of_kind(&docs, "Service") {
            let selector = get(svc, &["spec", "selector"]).context("a selector")?;
            let Some(target) = of_kind(&docs, "Deployment")
                .chain(of_kind(&docs, "StatefulSet"))
                .find(|d| {
                    get(d, &["spec", "template", "metadata", "labels"]).is_some_and(|l| {
                        selector
                            .as_mapping()
                            .into_iter()
                            .flatten()
                            .all(|(k, v)| l.get(k) == Some(v))
                    })
                })
            else {
                bail!(
                    "{overlay}: Service {:?} selects no pod",
                    s(svc, &["metadata", "name"])
                );
            };
            let container_ports: Vec<&Value> =
                seq(target, &["spec", "template", "spec", "containers"])
                    .iter()
                    .flat_map(|c| seq(c, &["ports"]))
                    .collect();
            for p in seq(svc, &["spec", "ports"]) {
                let target_port = get(p, &["targetPort"]).context("targetPort")?;
                assert!(
                    container_ports
                        .iter()
                        .any(|cp| get(cp, &["name"]) == Some(target_port)
                            || get(cp, &["containerPort"]) == Some(target_port)),
                    "{overlay}: Service {:?} port {target_port:?} is no container port",
                    s(svc, &["metadata", "name"])
                );
            }
        }
        for ing in of_kind(&docs, "Ingress") {
            for rule in seq(ing, &["spec", "rules"]) {
                for path in seq(rule, &["http", "paths"]) {
                    let svc = s(path, &["backend", "service", "name"]).context("a backend")?;
                    let port =
                        s(path, &["backend", "service", "port", "name"]).context("a port name")?;
                    let service = named(&docs, "Service", svc)?;
                    assert!(
                        seq(service, &["spec", "ports"])
                            .iter()
                            .any(|p| s(p, &["name"]) == Some(port)),
                        "{overlay}: Ingress backend {svc}:{port} is no Service port"
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn every_topic_the_engine_uses_is_a_kafka_topic_of_the_production_shape() -> anyhow::Result<()> {
    let docs = render("production")?;
    let declared = common::declarations();
    let settings = named_prefix(&docs, "ConfigMap", "inbox-settings")?;
    let setting = |k: &str| -> anyhow::Result<String> {
        match s(settings, &["data", k]) {
            Some(v) => Ok(v.to_owned()),
            None => declared
                .get(k)
                .and_then(|(s, _)| s.default)
                .map(str::to_owned)
                .with_context(|| format!("{k} neither set nor defaulted")),
        }
    };
    let prefix = setting("INBOX_TOPIC_PREFIX")?;
    let topics = platform::kafka::Topics::with_prefix(&prefix);
    let mut used = vec![
        topics.inbound_messages,
        topics.inbound_dead_letters,
        topics.ticket_events,
    ];
    for k in [
        "INBOX_AFC_MSGS_TOPIC",
        "INBOX_AFC_VERDICTS_TOPIC",
        "INBOX_AFC_DLQ_TOPIC",
    ] {
        used.push(format!("{prefix}{}", setting(k)?));
    }
    let partitions: u64 = setting("INBOX_KAFKA_PARTITIONS")?.parse()?;
    let replication: u64 = setting("INBOX_KAFKA_REPLICATION")?.parse()?;
    let user = named(&docs, "KafkaUser", "inbox-engine")?;
    let allowed: BTreeSet<&str> = seq(user, &["spec", "authorization", "acls"])
        .iter()
        .filter(|a| s(a, &["resource", "type"]) == Some("topic"))
        .filter_map(|a| s(a, &["resource", "name"]))
        .collect();
    for topic in &used {
        let t = of_kind(&docs, "KafkaTopic")
            .find(|t| {
                s(t, &["spec", "topicName"]).or_else(|| s(t, &["metadata", "name"]))
                    == Some(topic.as_str())
            })
            .with_context(|| format!("no KafkaTopic for {topic}"))?;
        assert_eq!(
            get(t, &["spec", "partitions"]).and_then(Value::as_u64),
            Some(partitions),
            "KafkaTopic {topic}: partitions must be INBOX_KAFKA_PARTITIONS"
        );
        assert_eq!(
            get(t, &["spec", "replicas"]).and_then(Value::as_u64),
            Some(replication),
            "KafkaTopic {topic}: replicas must be INBOX_KAFKA_REPLICATION"
        );
        assert!(
            allowed.contains(topic.as_str()),
            "KafkaUser inbox-engine may not use {topic}"
        );
    }
    Ok(())
}

#[test]
fn the_image_holds_the_binaries_the_build_produces_and_the_manifests_start() -> anyhow::Result<()> {
    let dockerfile = std::fs::read_to_string(platform::workspace_root().join("Dockerfile"))?;
    let built: BTreeSet<&str> = dockerfile
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1])
        .collect();
    let copy = dockerfile
        .lines()
        .find(|l| l.starts_with("COPY --from=build"))
        .context("the runtime stage copies the binaries from the build stage")?;
    let words: Vec<&str> = copy.split_whitespace().collect();
    ensure!(
        words.last() == Some(&"/usr/local/bin/"),
        "{copy}: into /usr/local/bin/"
    );
    let copied: BTreeSet<&str> = words[2..words.len() - 1]
        .iter()
        .filter_map(|p| p.rsplit('/').next())
        .collect();
    assert_eq!(
        copied, built,
        "the image copies exactly what its build stage builds"
    );
    for name in &built {
        // `cargo build --workspace --bins` (make test) built the same targets.
        e2e::binary(name)?;
    }
    for overlay in OVERLAYS {
        for c in containers(&render(overlay)?)? {
            assert!(
                built.contains(c.binary.as_str()),
                "{overlay} {} starts /usr/local/bin/{}, which the image does not hold",
                c.owner,
                c.binary
            );
            if c.owner.starts_with("Job/") {
                assert_eq!(
                    c.args,
                    ["migrate"],
                    "the migration Job runs `workflow migrate`"
                );
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_migration_jobs_command_migrates_a_fresh_database_and_a_second_run_changes_nothing()
-> anyhow::Result<()> {
    let stack = e2e::Stack::from_env().await?;
    let name = format!("k8s_migrate_{}", uuid::Uuid::new_v4().simple());
    let url = stack.fresh_database(&name).await?;
    let latest = tickets::store::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .context("the store has migrations")?;
    for run in 1..=2 {
        let out = tokio::process::Command::new(e2e::binary("workflow")?)
            .arg("migrate")
            .env("INBOX_DATABASE_URL", &url)
            .env("NO_COLOR", "1")
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("schema version {latest}")),
            "run {run} of `workflow migrate`: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut db)
            .await?;
    let embedded: Vec<i64> = tickets::store::MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(applied, embedded, "every migration applied, once");
    Ok(())
}
