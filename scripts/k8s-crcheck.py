#!/usr/bin/env python3
"""The operators' resources of k8s/ against what their CRDs require, offline (no CRD ships in a
registry this project installs from, so the required fields are stated here, from the CRDs of
Strimzi 1.x, CloudNativePG 1.2x, Prometheus Operator and External Secrets Operator 0.1x), plus
the rules the operators enforce outside the schema (a Strimzi resource names its cluster in the
label `strimzi.io/cluster`; a CloudNativePG cluster needs `storage.size` or a `pvcTemplate`).

Built-in kinds are kubernetes-validate's (scripts/k8s.sh); any other API group is an error
here, so no resource goes unchecked. Usage: k8s-crcheck.py FILE|- (exit 1 on any error)."""
import sys

import jsonschema
import yaml


def obj(required=(), props=None, **kw):
    d = {"type": "object", "required": list(required), "properties": props or {}}
    d.update(kw)
    return d


def arr(items, **kw):
    return {"type": "array", "items": items, **kw}


STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
CLUSTER_LABEL = obj(["labels"], {"labels": obj(["strimzi.io/cluster"], {"strimzi.io/cluster": STR})})
STORAGE_TYPES = ["ephemeral", "persistent-claim", "jbod"]
VOLUME = obj(["type"], {"type": {"enum": STORAGE_TYPES[:2]}, "id": INT, "size": STR, "deleteClaim": BOOL})
LISTENER = obj(["name", "port", "type", "tls"], {
    "name": STR, "port": INT, "tls": BOOL,
    "type": {"enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]}})

STRIMZI = "kafka.strimzi.io/v1"  # Strimzi 1.0 removed v1beta2
SCHEMAS = {
    (STRIMZI, "Kafka"): obj(["spec"], {"spec": obj(["kafka"], {"kafka": obj(["listeners"], {
        "listeners": arr(LISTENER, minItems=1)})})}),
    (STRIMZI, "KafkaNodePool"): obj(["spec", "metadata"], {"metadata": CLUSTER_LABEL, "spec": obj(
        ["replicas", "roles", "storage"], {
            "replicas": INT,
            "roles": arr({"enum": ["broker", "controller"]}, minItems=1),
            "storage": obj(["type"], {"type": {"enum": STORAGE_TYPES}, "volumes": arr(VOLUME)})})}),
    (STRIMZI, "KafkaTopic"): obj(["metadata"], {"metadata": CLUSTER_LABEL, "spec": obj([], {
        "partitions": {"type": "integer", "minimum": 1},
        "replicas": {"type": "integer", "minimum": 1, "maximum": 32767}, "topicName": STR})}),
    (STRIMZI, "KafkaUser"): obj(["metadata"], {"metadata": CLUSTER_LABEL, "spec": obj([], {
        "authentication": obj(["type"], {"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}}),
        "authorization": obj(["type", "acls"], {"acls": arr(obj(["resource", "operations"], {
            "resource": obj(["type"]), "operations": arr(STR, minItems=1)}))})})}),
    ("postgresql.cnpg.io/v1", "Cluster"): obj(["metadata", "spec"], {"spec": obj(["instances"], {
        "instances": {"type": "integer", "minimum": 1},
        "storage": {"anyOf": [obj(["size"], {"size": STR}), obj(["pvcTemplate"])]}})}),
    ("postgresql.cnpg.io/v1", "Pooler"): obj(["metadata", "spec"], {"spec": obj(["cluster", "pgbouncer"], {
        "cluster": obj(["name"], {"name": STR}), "instances": INT, "type": {"enum": ["rw", "ro", "r"]},
        "pgbouncer": obj([], {"poolMode": {"enum": ["session", "transaction"]}})})}),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): obj(["spec"], {"spec": obj(["endpoints", "selector"], {
        "selector": {"type": "object"}, "endpoints": arr(obj(["port"]), minItems=1)})}),
    ("external-secrets.io/v1", "ExternalSecret"): obj(["spec"], {"spec": obj(["secretStoreRef"], {
        "secretStoreRef": obj(["name"], {"name": STR, "kind": {"enum": ["SecretStore", "ClusterSecretStore"]}}),
        "target": obj([], {"name": STR})}, anyOf=[{"required": ["data"]}, {"required": ["dataFrom"]}])}),
}
# Groups kubernetes-validate knows (the core group has no prefix).
BUILT_IN = {"v1", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io"}


def main(paths):
    errors = checked = 0
    for path in paths:
        with (sys.stdin if path == "-" else open(path)) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for d in docs:
            key = (d.get("apiVersion", ""), d.get("kind", ""))
            name = f"{key[1]}/{(d.get('metadata') or {}).get('name')}"
            group = key[0].split("/")[0] if "/" in key[0] else key[0]
            if group in BUILT_IN:
                continue
            checked += 1
            if key not in SCHEMAS:
                print(f"ERROR {name}: no CRD check for {key[0]} {key[1]} (add it to scripts/k8s-crcheck.py)")
                errors += 1
                continue
            for e in sorted(jsonschema.Draft202012Validator(SCHEMAS[key]).iter_errors(d), key=lambda e: list(e.path)):
                print(f"ERROR {name}: {'.'.join(map(str, e.path)) or '<root>'}: {e.message}")
                errors += 1
    print(f"k8s-crcheck: {checked} operator resources, {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["-"]))
