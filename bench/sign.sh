#!/usr/bin/env bash
# Display URLs through RabbitMQ (issue 11): a release worker on SeaweedFS's STS and S3 serves
# signing requests; examples/sign_bench.rs sends them as a backend does (direct reply-to) and
# measures each round trip, after one warm-up request that assumes the role. Per batch size
# (1 and 100): latency with one request at a time (p50/p99), then throughput with several
# outstanding, and the worker's CPU time over both, as URLs per CPU-second ("per core").
# Prints a Markdown table for BENCHMARKS.md.
#
#   BENCH_SIGN_REQUESTS (default 500)   requests per measurement
#   BENCH_SIGN_CONCURRENCY (default 8)  outstanding requests in the throughput run
# Needs the peers (`make bench-sign` starts them) and a RabbitMQ at ASSET_WORKER_AMQP_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ASSET_WORKER_TEST_S3_ENDPOINT:-}" ]; then
    [ -f .peers/env ] || { echo "bench: run \`scripts/peers.sh start\` first"; exit 1; }
    set -a; . .peers/env; set +a
fi
requests=${BENCH_SIGN_REQUESTS:-500}
concurrency=${BENCH_SIGN_CONCURRENCY:-8}
cargo build --quiet --release --bin asset-worker --example sign_bench
bin=target/release/asset-worker
bench=target/release/examples/sign_bench
prefix=bench-sign-$$
log=$(mktemp)
worker=
cleanup() {
    [[ -z $worker ]] || { kill -TERM "$worker" 2>/dev/null; wait "$worker" 2>/dev/null || true; }
    python3 scripts/amqp.py delete --prefix "$prefix" >/dev/null || true
    rm -f "$log"
}
trap cleanup EXIT

export ASSET_WORKER_QUEUE_PREFIX=$prefix
AWS_ACCESS_KEY_ID=$ASSET_WORKER_TEST_S3_ADMIN_ACCESS_KEY_ID \
AWS_SECRET_ACCESS_KEY=$ASSET_WORKER_TEST_S3_ADMIN_SECRET_ACCESS_KEY \
AWS_EC2_METADATA_DISABLED=true \
ASSET_WORKER_S3_ENDPOINT=$ASSET_WORKER_TEST_S3_ENDPOINT \
ASSET_WORKER_STS_ENDPOINT=$ASSET_WORKER_TEST_STS_ENDPOINT \
ASSET_WORKER_S3_FORCE_PATH_STYLE=true \
ASSET_WORKER_HTTP_ADDR=127.0.0.1:0 \
    "$bin" run 2>"$log" &
worker=$!
deadline=$((SECONDS + 30))
until grep -q 'serving signing requests' "$log"; do
    kill -0 "$worker" 2>/dev/null || { cat "$log" >&2; exit 1; }
    ((SECONDS < deadline)) || { cat "$log" >&2; echo "bench: the worker serves no signing requests after 30 s"; exit 1; }
    sleep 0.05
done
source_json=$(printf '{"provider":"s3","region":"eu-central-1","bucket":"%s","key":"bench/photo 1.jpg","role_arn":"%s","external_id":"hub-org-1234"}' \
    "$ASSET_WORKER_TEST_S3_BUCKET" "$ASSET_WORKER_TEST_S3_ROLE_ARN")

cpu_seconds() { # the worker's user + system time, in seconds
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$worker/stat"
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

echo "## Display URLs through RabbitMQ, $(date -u +%F), release, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "\`bash bench/sign.sh\` ($requests requests each; S3 on SeaweedFS, warm session)"
echo
echo "| batch | p50 ms (1 at a time) | p99 ms | max ms | URLs/s (1 at a time) | URLs/s ($concurrency outstanding) | URLs per worker CPU-second |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for batch in 1 100; do
    before=$(cpu_seconds)
    latency=$("$bench" --requests "$requests" --batch "$batch" --concurrency 1 "$source_json")
    throughput=$("$bench" --requests "$requests" --batch "$batch" --concurrency "$concurrency" "$source_json")
    after=$(cpu_seconds)
    urls=$((2 * (requests + 1) * batch))
    per_cpu=$(awk -v urls="$urls" -v cpu="$(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }')" \
        'BEGIN { printf "%.0f", (cpu > 0 ? urls / cpu : 0) }')
    echo "| $batch | $(field "$latency" p50_ms) | $(field "$latency" p99_ms) | $(field "$latency" max_ms) | $(field "$latency" urls_per_second) | $(field "$throughput" urls_per_second) | $per_cpu |"
done
