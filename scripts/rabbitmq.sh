#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers where the worker will look for it, so that `make test`
# and `make demo` work on a fresh Debian machine (DESIGN §6).
#
#   scripts/rabbitmq.sh ensure [--dry-run]
#   scripts/rabbitmq.sh check       only the quorum-queue check of step 2, against the URL's broker
#
# The broker is the host:port of ASSET_WORKER_AMQP_URL (default
# amqp://guest:guest@127.0.0.1:5672/%2f; a --config file's amqp_url is not read here).
#   1. Something listens there: nothing to do (it is taken to be the broker; the worker's
#      own connection will say otherwise).
#   2. Else, on this machine only: install Debian's rabbitmq-server if it is missing
#      (apt-get, through sudo unless root), start the node (the systemd service if systemd
#      runs, else `rabbitmq-server -detached`), `rabbitmqctl await_startup`, check that it now
#      listens there and that quorum queues work (RabbitMQ ≥ 3.8): a durable quorum queue is
#      declared and deleted over AMQP with the URL's credentials.
# --dry-run prints the commands that would change the machine (install, start) instead of
# running them; the checks that change nothing still run. Running it again is harmless.
set -euo pipefail

# Debian puts rabbitmqctl and friends in /usr/sbin, which is not on a user's PATH.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MIN_VERSION=3.8
DEFAULT_URL='amqp://guest:guest@127.0.0.1:5672/%2f'
URL=${ASSET_WORKER_AMQP_URL:-$DEFAULT_URL}
URL_NAME=$([[ -n ${ASSET_WORKER_AMQP_URL:-} ]] && echo "ASSET_WORKER_AMQP_URL" || echo "the default AMQP URL")
DRY_RUN=false

say() { echo "rabbitmq: $*" >&2; }
die() { echo "rabbitmq: $*" >&2; exit 1; }

# run CMD...: show a command that changes the machine, then run it (or only show it).
run() {
    if $DRY_RUN; then
        say "would run: $*"
    else
        say "running: $*"
        "$@"
    fi
}

# Host and port of the URL (never its password: only the host and port are printed).
parse_url() {
    local rest authority
    case $URL in
        amqp://*) PORT=5672; rest=${URL#amqp://} ;;
        amqps://*) PORT=5671; rest=${URL#amqps://} ;;
        *) die "$URL_NAME must start with amqp:// or amqps:// (value not shown: it may hold a password)" ;;
    esac
    authority=${rest%%/*}
    authority=${authority##*@}          # drop user:password@
    if [[ $authority == \[* ]]; then    # [IPv6]:port
        HOST=${authority%%]*}
        HOST=${HOST#[}
        authority=${authority#*]}
        [[ $authority == :* ]] && PORT=${authority#:}
    elif [[ $authority == *:* ]]; then
        HOST=${authority%%:*}
        PORT=${authority##*:}
    else
        HOST=$authority
    fi
    HOST=${HOST:-localhost}
    [[ $PORT =~ ^[0-9]+$ ]] || die "$URL_NAME has a port that is not a number"
}

# listening: a TCP connection to HOST:PORT is accepted.
listening() {
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$HOST" "$PORT" 2>/dev/null
}

is_local_host() {
    case $HOST in
        localhost | 127.* | ::1) return 0 ;;
        *) return 1 ;;
    esac
}

# The commands that act on the node: root's, or through sudo (they need the node's cookie).
sudo_prefix() {
    if [[ $(id -u) == 0 ]]; then
        SUDO=()
    elif command -v sudo >/dev/null; then
        SUDO=(sudo)
    else
        die "not root and no sudo: installing and starting RabbitMQ needs root"
    fi
}

install_server() {
    command -v apt-get >/dev/null ||
        die "rabbitmq-server is not installed and this is not Debian (no apt-get): install RabbitMQ ≥ $MIN_VERSION and start it"
    say "rabbitmq-server is not installed: Debian's package provides it (apt-get update, then" \
        "apt-get install -y rabbitmq-server; it brings Erlang; on a systemd machine the package starts the service)"
    run "${SUDO[@]}" apt-get update -qq
    run "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server
}

start_server() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        run "${SUDO[@]}" systemctl start rabbitmq-server
    else
        run "${SUDO[@]}" rabbitmq-server -detached
    fi
    # A detached node needs a moment before the CLI can reach it; await_startup then waits
    # for the broker inside it to finish booting.
    if ! $DRY_RUN; then
        local deadline=$((SECONDS + 60))
        until "${SUDO[@]}" rabbitmq-diagnostics -q ping >/dev/null 2>&1; do
            ((SECONDS < deadline)) || die "the node did not come up within 60 s; see /var/log/rabbitmq/"
            sleep 1
        done
    fi
    run "${SUDO[@]}" rabbitmqctl -q await_startup
}

check_version() {
    local version
    version=$("${SUDO[@]}" rabbitmqctl -q version)
    if [[ $(printf '%s\n%s\n' "$MIN_VERSION" "$version" | sort -V | head -1) != "$MIN_VERSION" ]]; then
        die "RabbitMQ $version is too old: quorum queues need $MIN_VERSION or later"
    fi
    say "RabbitMQ $version"
}

# check_quorum: declares a durable quorum queue at the URL with its credentials, then deletes
# it (scripts/amqp.py: python3's standard library, a Debian default, and no root needed).
check_quorum() {
    command -v python3 >/dev/null || { say "no python3: quorum queues not checked"; return 0; }
    local answer rc=0
    answer=$(ASSET_WORKER_AMQP_URL=$URL python3 "$ROOT/scripts/amqp.py" check-quorum 2>&1) || rc=$?
    case $rc in
        0) say "$answer: quorum queues work" ;;
        3) die "$answer; quorum queues need RabbitMQ ≥ $MIN_VERSION with the quorum_queue feature flag" \
            "enabled (rabbitmqctl enable_feature_flag quorum_queue)" ;;
        *) die "$answer" ;;
    esac
}

ensure() {
    parse_url
    if listening; then
        say "something already listens on $HOST:$PORT ($URL_NAME): taking it to be the broker; nothing to do"
        return 0
    fi
    is_local_host ||
        die "nothing listens on $HOST:$PORT ($URL_NAME), and it is not this machine: start that broker, or point ASSET_WORKER_AMQP_URL elsewhere"
    say "nothing listens on $HOST:$PORT ($URL_NAME): making sure a local RabbitMQ runs"
    sudo_prefix
    local installed_now=false
    if ! command -v rabbitmq-server >/dev/null; then
        install_server
        installed_now=true
    fi
    if $installed_now && ! $DRY_RUN && listening; then
        say "the package started the service"
        "${SUDO[@]}" rabbitmqctl -q await_startup
    else
        # A node that runs but does not listen there would not be helped by a second start.
        if command -v rabbitmq-diagnostics >/dev/null && "${SUDO[@]}" rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
            die "a RabbitMQ node already runs on this machine but nothing listens on $HOST:$PORT; its listeners:
$("${SUDO[@]}" rabbitmq-diagnostics -q listeners 2>&1 | sed 's/^/    /')
fix ASSET_WORKER_AMQP_URL, or the node's listeners (/etc/rabbitmq/rabbitmq.conf)"
        fi
        start_server
    fi
    if $DRY_RUN; then
        say "would then check that $HOST:$PORT listens, that RabbitMQ is ≥ $MIN_VERSION, and declare a quorum queue"
        return 0
    fi
    listening || die "RabbitMQ started but nothing listens on $HOST:$PORT; its listeners:
$("${SUDO[@]}" rabbitmq-diagnostics -q listeners 2>&1 | sed 's/^/    /')
RabbitMQ listens on 5672 unless /etc/rabbitmq/rabbitmq.conf says otherwise: fix that or ASSET_WORKER_AMQP_URL"
    say "RabbitMQ is up on $HOST:$PORT"
    check_version
    check_quorum
}

cmd=${1:-}
shift || true
for arg in "$@"; do
    case $arg in
        --dry-run) DRY_RUN=true ;;
        *) die "unknown option $arg (usage: scripts/rabbitmq.sh ensure [--dry-run] | check)" ;;
    esac
done
case $cmd in
    ensure) ensure ;;
    check) parse_url; check_quorum ;;
    *) die "usage: scripts/rabbitmq.sh ensure [--dry-run] | check" ;;
esac
