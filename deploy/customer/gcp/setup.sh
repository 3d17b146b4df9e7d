#!/usr/bin/env bash
# The customer's side of the labeling platform's delegated access on Google Cloud, as gcloud
# commands (docs/CUSTOMER-SETUP.md). Run it as an admin of the bucket's project, or print the
# commands with --dry-run to review them or run them yourself:
#
#   deploy/customer/gcp/setup.sh --project PROJECT --bucket BUCKET \
#       --platform-account WORKER@PLATFORM.iam.gserviceaccount.com \
#       [--prefix PREFIX] [--origin https://app.example] [--name labeling-platform-reader] [--dry-run]
#
# It creates a service account in PROJECT that may read objects of BUCKET (roles/
# storage.objectViewer; with --prefix, only objects whose name starts with PREFIX, through an
# IAM condition, which needs uniform bucket-level access), lets the platform's account sign as
# it (roles/iam.serviceAccountTokenCreator on that one service account: no key ever leaves
# Google), and with --origin sets the bucket's CORS so the platform's pages may show the
# assets. Give the platform the service account's email it prints.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

project="" bucket="" platform="" prefix="" origin="" name="labeling-platform-reader" dry_run=false
while (($#)); do
    case $1 in
        --project) project=${2:?}; shift 2 ;;
        --bucket) bucket=${2:?}; shift 2 ;;
        --platform-account) platform=${2:?}; shift 2 ;;
        --prefix) prefix=${2:?}; shift 2 ;;
        --origin) origin=${2:?}; shift 2 ;;
        --name) name=${2:?}; shift 2 ;;
        --dry-run) dry_run=true; shift ;;
        -h | --help) usage ;;
        *) echo "setup.sh: unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $project && -n $bucket && -n $platform ]] || { echo "setup.sh: --project, --bucket and --platform-account are required" >&2; usage; }
[[ $project =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || { echo "setup.sh: --project $project is not a project ID" >&2; exit 2; }
[[ $bucket =~ ^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$ ]] || { echo "setup.sh: --bucket $bucket is not a bucket name" >&2; exit 2; }
[[ $platform =~ ^[^@[:space:]]+@[^@[:space:]]+$ ]] || { echo "setup.sh: --platform-account $platform is not an email" >&2; exit 2; }
[[ $name =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || { echo "setup.sh: --name $name is not a service account ID (6-30 of a-z 0-9 -)" >&2; exit 2; }
[[ -z $origin || $origin =~ ^https?://[A-Za-z0-9.:-]+$ ]] || { echo "setup.sh: --origin $origin is not a web origin (https://HOST[:PORT], no path)" >&2; exit 2; }
[[ $prefix != *\"* && $prefix != *\\* ]] || { echo "setup.sh: --prefix must not hold quotes or backslashes" >&2; exit 2; }

account="$name@$project.iam.gserviceaccount.com"

# run COMMAND...: print it (shell-quoted, as it can be pasted) and, unless --dry-run, run it.
run() {
    local quoted
    printf -v quoted '%q ' "$@"
    echo "${quoted% }"
    if ! $dry_run; then "$@"; fi
}

run gcloud iam service-accounts create "$name" --project="$project" \
    --display-name="Labeling platform: read-only access to gs://$bucket"

grant=(gcloud storage buckets add-iam-policy-binding "gs://$bucket" --member="serviceAccount:$account"
    --role=roles/storage.objectViewer)
if [[ -n $prefix ]]; then
    # Object names are matched as resource.name projects/_/buckets/BUCKET/objects/NAME.
    grant+=(--condition="expression=resource.name.startsWith(\"projects/_/buckets/$bucket/objects/$prefix\"),title=labeling-platform-prefix,description=Objects under $prefix only")
fi
run "${grant[@]}"

run gcloud iam service-accounts add-iam-policy-binding "$account" --project="$project" \
    --member="serviceAccount:$platform" --role=roles/iam.serviceAccountTokenCreator

if [[ -n $origin ]]; then
    # The same rule `asset-worker check --origin` prints (src/access/cors.rs). It replaces the
    # bucket's CORS rules: merge it with any the bucket already has.
    cors=$(printf '[{"origin":["%s"],"method":["GET","HEAD"],"responseHeader":["Range","Content-Length","Content-Range","Content-Type","ETag","Accept-Ranges"],"maxAgeSeconds":3600}]' "$origin")
    echo "cat > cors.json <<'JSON'"
    echo "$cors"
    echo "JSON"
    if ! $dry_run; then echo "$cors" >cors.json; fi
    run gcloud storage buckets update "gs://$bucket" --cors-file=cors.json
fi

echo "# Give the platform this service account: $account"
