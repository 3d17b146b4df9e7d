#!/usr/bin/env bash
# `make demo`: the queue worker end to end on this machine, with no cloud account. A worker
# (release build) consumes on the local provider over fixtures/; a job is enqueued for every
# fixture file (the hostile ones too: they show the failure kinds); the results are printed as
# they arrive, one line each; then the worker gets SIGTERM and drains, the demo's queues and
# exchanges are deleted, and a summary is printed: succeeded, failed by kind, wall time, and
# how many answers equal the reviewed answers in fixtures/expected/.
#
# `make demo` builds the binary and runs scripts/rabbitmq.sh ensure first. Everything this
# run makes is its own: the queue prefix demo-PID (never mixed with another worker's jobs) and
# a folder under target/ (the worker's temp dir and log), removed at the end; Ctrl-C cleans up
# the same way. The broker is ASSET_WORKER_AMQP_URL's (default guest@127.0.0.1:5672).
#
# Environment (not ASSET_WORKER_*: the worker refuses names it does not know): DEMO_BIN
# (default target/release/asset-worker), DEMO_TIMEOUT (seconds
# to wait for every result, default 120).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${DEMO_BIN:-$root/target/release/asset-worker}
timeout=${DEMO_TIMEOUT:-120}

say() { echo "demo: $*" >&2; }
die() { echo "demo: $*" >&2; exit 1; }

[[ -x $bin ]] || die "no $bin: \`make demo\` builds it (cargo build --release)"
command -v python3 >/dev/null || die "python3 is needed (the result formatter and the queue clean-up)"

# The demo's own names and folder; the worker's health port is any free one.
prefix=demo-$$
mkdir -p "$root/target"
work=$(mktemp -d "$root/target/demo.XXXXXX")
export ASSET_WORKER_QUEUE_PREFIX=$prefix
export ASSET_WORKER_LOCAL_ROOT=$root/fixtures
export ASSET_WORKER_TEMP_DIR=$work/tmp
export ASSET_WORKER_HTTP_ADDR=127.0.0.1:0

worker_pid=
keep_work=false

# stop_worker: SIGTERM (the worker drains its in-flight jobs), then wait for it; SIGKILL only
# if it outlives its drain deadline by 10 s.
stop_worker() {
    [[ -n $worker_pid ]] || return 0
    if kill -0 "$worker_pid" 2>/dev/null; then
        say "stopping the worker (SIGTERM, pid $worker_pid)"
        kill -TERM "$worker_pid" 2>/dev/null || true
        local deadline=$((SECONDS + ${ASSET_WORKER_DRAIN_TIMEOUT_SECONDS:-30} + 10))
        while kill -0 "$worker_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "$worker_pid" 2>/dev/null; then
            say "the worker is still running past its drain deadline: SIGKILL"
            kill -KILL "$worker_pid" 2>/dev/null || true
            keep_work=true
        fi
    fi
    local status=0
    wait "$worker_pid" 2>/dev/null || status=$?
    worker_pid=
    if ((status == 0)); then
        say "the worker stopped cleanly (exit 0)"
    else
        say "the worker exited with status $status; its log: $work/worker.log"
        keep_work=true
    fi
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_worker
    # The topology of the prefix (README, "The queue worker"); missing ones are fine.
    if ! python3 "$root/scripts/amqp.py" delete --prefix "$prefix" >"$work/cleanup.log" 2>&1; then
        say "could not delete the queues of $prefix: $(cat "$work/cleanup.log")"
        keep_work=true
    else
        say "deleted the queues and exchanges of $prefix"
    fi
    if [[ -f $work/summary ]]; then
        echo
        cat "$work/summary"
    fi
    # Kept when something went wrong, not after a Ctrl-C.
    if $keep_work || ((status != 0 && status != 130 && status != 143)); then
        say "kept $work (worker.log, results.jsonl)"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'exit 143' TERM

# Every fixture file: the type folders, not the reviewed answers (expected/), the other tools'
# answers (reference/), licenses/, or the scripts and README at the top.
mapfile -t keys < <(cd fixtures && find . -mindepth 2 -type f -not -name '.*' \
    -not -path './expected/*' -not -path './reference/*' -not -path './licenses/*' | sed 's|^\./||' | sort)
((${#keys[@]} > 0)) || die "no fixture files under fixtures/"

say "starting the worker: queue prefix $prefix, local provider over fixtures/, log $work/worker.log"
# In a session of its own, so that the demo alone decides when the worker stops: a Ctrl-C in
# this terminal reaches this script, whose cleanup sends the worker one SIGTERM, and it drains.
# (Run by hand, the worker drains on Ctrl-C as well; its extraction children sit in process
# groups of their own, so the terminal's SIGINT never reaches them.)
setsid "$bin" run >"$work/worker.log" 2>&1 </dev/null &
worker_pid=$!
# Ready when it consumes (it has connected and declared the topology).
deadline=$((SECONDS + 30))
until grep -q '"consuming"' "$work/worker.log" 2>/dev/null; do
    kill -0 "$worker_pid" 2>/dev/null || { cat "$work/worker.log" >&2; die "the worker exited during start"; }
    ((SECONDS < deadline)) || { cat "$work/worker.log" >&2; die "the worker did not start consuming in 30 s"; }
    sleep 0.1
done

start=$(date +%s.%N)
"$bin" enqueue --local "${keys[@]}" >"$work/job_ids"
say "enqueued ${#keys[@]} jobs (one per fixture file); results as they arrive:"
echo
status=0
"$bin" results --count "${#keys[@]}" --timeout "$timeout" | tee "$work/results.jsonl" |
    python3 "$root/scripts/demo_results.py" --expected "${#keys[@]}" --start "$start" \
        --goldens fixtures/expected --summary "$work/summary" || status=$?
echo
exit "$status"
