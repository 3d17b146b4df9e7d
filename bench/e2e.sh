#!/usr/bin/env bash
# Jobs end to end through a real RabbitMQ (issue 4), release build: a batch of jobs is
# published at once to a worker that is already consuming, and each job is timed from its
# publish to its result's arrival (examples/e2e_driver.rs). Prints Markdown for BENCHMARKS.md.
#
# Batches, each through a fresh worker (so that its peak memory is the batch's):
#   small  BENCH_E2E_SMALL jobs (500), the fixtures of every type but hostile/, cycled
#   large  BENCH_E2E_LARGE_EACH (4) jobs of each large file made by bench/e2e.py make-large
#          (no ffmpeg needed): a 200 MiB moov-at-end MP4 (bench/fetch.sh's padded-mdat recipe),
#          a 10-minute WAV (101 MiB), a 5000x3500 noise PNG (50 MiB), a 50 MiB log, a 50 MiB PDF
# read through (1) the local provider and (2) SeaweedFS (S3 through the role of .peers/env,
# as tests/cli/delegated.rs does); and beside them, the same small batch answered by
# examples/noop_consumer.rs (same prefetch, a confirmed tiny result and an ack per job, no
# work): the broker's limit on this machine.
#
# Where the machine's time went (the broker is on it too): its busy and idle CPU and the
# broker's (beam.smp) from /proc between the batch's first publish and its last result, per job.
#
# Memory: the worker's own peak (VmHWM, sampled from /proc until it exits) and the largest
# extraction child's (/usr/bin/time's %M is the largest peak of the worker and its children;
# see largest_child in bench/e2e.py).
#
# Storage far away (issue 8): BENCH_E2E_RTTS ("0 30") runs the small batch from SeaweedFS once
# more per value through bench/delay_proxy.py, which adds that round-trip time (ms) to every
# connection and answer: what a worker in Frankfurt sees against real buckets. The proxy is the
# S3 endpoint the worker signs for, so signatures still match.
#
# A consumer with a core of its own (BENCH_E2E_PIN=1): the broker (every thread of the
# machine's beam.smp) and the driver are pinned to CPU 0, the consumer and its parser children
# to CPU 1, and the broker's affinity is given back at the end. On 2 cores this is the nearest
# to production, where the broker runs elsewhere: the consumers then compete for one core
# each, not with the broker.
#
#   BENCH_E2E_RUNS (3) repetitions, interleaved; BENCH_E2E_PROVIDERS ("local s3");
#   BENCH_E2E_BIN: another build of the worker (a copy of an earlier commit's, for an A/B in
#   one window); the no-op consumer and driver are this tree's;
#   ASSET_WORKER_CONCURRENCY: the prefetch of worker and no-op consumer (default: 32 per core).
# Needs RabbitMQ (`make rabbitmq`) and, for s3, SeaweedFS (`scripts/peers.sh start seaweedfs`;
# this script sources .peers/env unless it is in the environment). `make bench-e2e` does both.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${BENCH_E2E_RUNS:-3}
small=${BENCH_E2E_SMALL:-500}
rtts=${BENCH_E2E_RTTS:-0 30}
large_each=${BENCH_E2E_LARGE_EACH:-4}
providers=${BENCH_E2E_PROVIDERS:-local s3}
dir=$root/target/bench-e2e
bin=${BENCH_E2E_BIN:-$root/target/release/asset-worker}
driver=$root/target/release/examples/e2e_driver
noop=$root/target/release/examples/noop_consumer
external_id=hub-org-1234            # SeaweedFS does not check it; the job must carry one

pin=${BENCH_E2E_PIN:-0}
say() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

if [[ " $providers " == *" s3 "* && -z ${ASSET_WORKER_TEST_S3_ENDPOINT:-} ]]; then
    [[ -f .peers/env ]] || die "s3 needs SeaweedFS: scripts/peers.sh start seaweedfs (or BENCH_E2E_PROVIDERS=local)"
    set -a; . .peers/env; set +a
fi
[[ -x /usr/bin/time ]] || die "/usr/bin/time is needed (Debian: apt-get install time)"

say "building the release binary and the two examples"
cargo build --quiet --release --bin asset-worker --example noop_consumer --example e2e_driver

# The objects: the small fixtures, copied, and the large files, under one root (the local
# provider's, and the key prefix in SeaweedFS).
objects=$dir/objects
mkdir -p "$objects/small"
for type in image video audio pdf dicom text; do
    rm -rf "$objects/small/$type"
    cp -r "fixtures/$type" "$objects/small/$type"
done
python3 bench/e2e.py make-large "$objects/large"
(cd "$objects" && find small -type f | sort) >"$dir/small.files"
mapfile -t small_files <"$dir/small.files"
for ((i = 0; i < small; i++)); do echo "${small_files[i % ${#small_files[@]}]}"; done >"$dir/keys.small"
(cd "$objects" && for ((i = 0; i < large_each; i++)); do find large -type f -not -name '*.partial' | sort; done) \
    >"$dir/keys.large"

results=$dir/results-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"
s3_prefix=bench-e2e-$$
consumer_pid= time_pid= sampler_pid= prefix= uploaded=false proxy_pids=()

delete_queues() {
    [[ -n $prefix ]] || return 0
    python3 scripts/amqp.py delete --prefix "$prefix" >/dev/null
    prefix=
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $consumer_pid ]] && kill -0 "$consumer_pid" 2>/dev/null; then
        kill -TERM "$consumer_pid" 2>/dev/null || true
        wait "$time_pid" 2>/dev/null || true
    fi
    [[ -z $sampler_pid ]] || wait "$sampler_pid" 2>/dev/null || true
    for pid in "${proxy_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    delete_queues || true
    if $uploaded; then
        "$root/.venv/bin/python" bench/e2e.py s3 delete "$objects" "$s3_prefix" || true
    fi
    rm -rf "$dir/tmp"
    if ((pin)); then
        taskset -a -p -c "0-$(($(nproc) - 1))" "$(pgrep -o beam.smp)" >/dev/null || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ " $providers " == *" s3 "* ]]; then
    "$root/.venv/bin/python" bench/e2e.py s3 upload "$objects" "$s3_prefix"
    uploaded=true
fi

# measure NAME BATCH CONSUMER [PROVIDER [S3_ENDPOINT]]: one batch through a fresh consumer of
# its own prefix.
measure() {
    local name=$1 batch=$2 consumer=$3 provider=${4:-local} s3_endpoint=${5:-${ASSET_WORKER_TEST_S3_ENDPOINT:-}} out
    out=$results/$name
    echo "$name" >>"$results/order"
    prefix=bench-e2e-$$-${name//[^a-z0-9]/-}
    local env=(ASSET_WORKER_QUEUE_PREFIX="$prefix" ASSET_WORKER_HTTP_ADDR=127.0.0.1:0
        ASSET_WORKER_TEMP_DIR="$dir/tmp" ASSET_WORKER_LOCAL_ROOT="$objects")
    local driver_args=(--keys "$dir/keys.$batch" --out "$out.times.tsv")
    if [[ $provider == s3 ]]; then
        env+=(AWS_ACCESS_KEY_ID="$ASSET_WORKER_TEST_S3_ADMIN_ACCESS_KEY_ID"
            AWS_SECRET_ACCESS_KEY="$ASSET_WORKER_TEST_S3_ADMIN_SECRET_ACCESS_KEY"
            AWS_EC2_METADATA_DISABLED=true
            ASSET_WORKER_S3_ENDPOINT="$s3_endpoint"
            ASSET_WORKER_STS_ENDPOINT="$ASSET_WORKER_TEST_STS_ENDPOINT"
            ASSET_WORKER_S3_FORCE_PATH_STYLE=true)
        driver_args+=(--s3-bucket "$ASSET_WORKER_TEST_S3_BUCKET" --role-arn "$ASSET_WORKER_TEST_S3_ROLE_ARN"
            --external-id "$external_id")
        sed "s|^|$s3_prefix/|" "$dir/keys.$batch" >"$dir/keys.$batch.s3"
        driver_args[1]=$dir/keys.$batch.s3
    fi
    local command=("$bin" run) driver_cpus=()
    [[ $consumer == noop ]] && command=("$noop")
    if ((pin)); then
        command=(taskset -c 1 "${command[@]}")
        driver_cpus=(taskset -c 0)
    fi
    # Its own session: the terminal's Ctrl-C reaches the worker only through cleanup.
    env "${env[@]}" setsid /usr/bin/time -f '%M' -o "$out.maxrss" "${command[@]}" >"$out.log" 2>&1 &
    time_pid=$!
    local deadline=$((SECONDS + 30))
    until consumer_pid=$(cat "/proc/$time_pid/task/$time_pid/children" 2>/dev/null) && [[ -n $consumer_pid ]]; do
        ((SECONDS < deadline)) || die "$name: the consumer did not start"
        sleep 0.01
    done
    consumer_pid=${consumer_pid%% *}
    until grep -q 'consuming' "$out.log"; do
        kill -0 "$consumer_pid" 2>/dev/null || { cat "$out.log" >&2; die "$name: the consumer exited"; }
        ((SECONDS < deadline)) || { cat "$out.log" >&2; die "$name: not consuming after 30 s"; }
        sleep 0.05
    done
    python3 bench/e2e.py sample "$consumer_pid" "$out.memory.json" &
    sampler_pid=$!
    until [[ -f $out.memory.json.started ]]; do
        kill -0 "$sampler_pid" 2>/dev/null || die "$name: the memory sampler exited"
        sleep 0.01
    done
    rm -f "$out.memory.json.started"
    local status=0
    python3 bench/e2e.py machine-cpu "$out.cpu-before.json"
    env "${env[@]}" "${driver_cpus[@]}" "$driver" "${driver_args[@]}" >"$out.summary.json" || status=$?
    python3 bench/e2e.py machine-cpu "$out.cpu-after.json"
    kill -TERM "$consumer_pid"
    wait "$time_pid" || say "$name: the consumer exited with status $?"
    consumer_pid=
    wait "$sampler_pid" || true
    sampler_pid=
    delete_queues
    ((status == 0)) || { cat "$out.summary.json" >&2; die "$name: not every job was answered"; }
    say "$name: $(cat "$out.summary.json")"
}

# One delaying proxy per RTT, in front of SeaweedFS's S3 port, for the whole run.
declare -A proxy_endpoint
if [[ " $providers " == *" s3 "* ]]; then
    s3_port=${ASSET_WORKER_TEST_S3_ENDPOINT##*:}
    for rtt in $rtts; do
        port_file=$dir/proxy-$rtt.port
        rm -f "$port_file"
        python3 bench/delay_proxy.py "$s3_port" "$rtt" >"$port_file" &
        proxy_pids+=($!)
        until [[ -s $port_file ]]; do sleep 0.05; done
        proxy_endpoint[$rtt]=http://127.0.0.1:$(cat "$port_file")
        say "SeaweedFS at ${rtt} ms RTT: ${proxy_endpoint[$rtt]}"
    done
fi

if ((pin)); then
    taskset -a -p -c 0 "$(pgrep -o beam.smp)" >/dev/null || die "BENCH_E2E_PIN: could not pin the broker"
    say "broker and driver on CPU 0, the consumer on CPU 1"
fi
say "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the first run"
for ((run = 1; run <= runs; run++)); do
    for provider in $providers; do
        measure "run$run.worker_${provider}_${small}small" small worker "$provider"
        if ((large_each > 0)); then
            measure "run$run.worker_${provider}_$(wc -l <"$dir/keys.large")large" large worker "$provider"
        fi
    done
    if [[ " $providers " == *" s3 "* ]]; then
        for rtt in $rtts; do
            measure "run$run.worker_s3-rtt${rtt}ms_${small}small" small worker s3 "${proxy_endpoint[$rtt]}"
        done
    fi
    measure "run$run.noop_${small}small" small noop
    say "load average after run $run: $(cut -d' ' -f1-3 /proc/loadavg)"
done

echo "## End to end through RabbitMQ, $(date -u +%F), RabbitMQ $(rabbitmqctl -q version 2>/dev/null || echo '?'), prefetch ${ASSET_WORKER_CONCURRENCY:-the default, 32 per core}, parser children ${ASSET_WORKER_POOL_SIZE:-one per core}"
echo
python3 bench/e2e.py report "$results"
echo
say "per-job times and logs: $results"
