#!/usr/bin/env bash
# Every check CI runs, in the order that fails fastest: formatting, lints, then every test
# (engine unit, property and vector tests; the store conformance suite; end-to-end tests
# against real server processes, one of which checks the served OpenAPI document against the
# running server with schemathesis; the web console in Chromium). Needs the Rust toolchain and
# Python 3 with network access to PyPI the first time; schemathesis is installed, pinned, into
# target/schemathesis-venv. Chromium, its driver and Node.js are installed with apt-get when
# missing (as root on Debian), and the console's packages with `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."
# The stream tests hold hundreds of connections open at once, each a file descriptor in the
# test process and another in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SCHEMATHESIS_VERSION=4.32.5
venv=target/schemathesis-venv
# Written last, so that an install cut short is done again rather than trusted.
installed="$venv/installed-$SCHEMATHESIS_VERSION"
install_log=target/schemathesis-install.log

install_schemathesis() {
    if [ -f "$installed" ] && [ -x "$venv/bin/schemathesis" ]; then
        return 0
    fi
    python3 -m venv "$venv" &&
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "schemathesis==$SCHEMATHESIS_VERSION" &&
        touch "$installed"
}

# What the console's tests need: Chromium and chromedriver for the browser test, Node.js and
# admin-ui's pinned packages for the check that the committed bundle matches its sources; and
# redis-server for the Redis store's tests.
console_log=target/console-tools-install.log
install_console_tools() {
    local missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    command -v npm >/dev/null || missing+=(nodejs npm)
    command -v redis-server >/dev/null || missing+=(redis-server)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
            echo "missing ${missing[*]}: install them (this script can as root on Debian)"
            return 1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                "${missing[@]}" || return 1
    fi
    # Keyed by the lock file, so that a changed lock installs afresh.
    local stamp
    stamp="admin-ui/node_modules/.installed-$(sha256sum admin-ui/package-lock.json | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        (cd admin-ui && npm ci --no-audit --no-fund) && touch "$stamp"
    fi
}

# The installs download while formatting, lints and the build run.
mkdir -p target
install_schemathesis >"$install_log" 2>&1 &
installer=$!
install_console_tools >"$console_log" 2>&1 &
console_installer=$!

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

if wait "$installer"; then
    SCHEMATHESIS="$PWD/$venv/bin/schemathesis"
    export SCHEMATHESIS
else
    # The conformance test then fails under CI=true, and says it skipped otherwise.
    echo "installing schemathesis $SCHEMATHESIS_VERSION failed:" >&2
    cat "$install_log" >&2
fi

# The console's tests fail under CI=true, and say they skipped otherwise, when what they
# need is missing.
if wait "$console_installer"; then
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    chromedriver --port="$port" >target/chromedriver.log 2>&1 &
    chromedriver_pid=$!
    trap 'kill "$chromedriver_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 50); do
        if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$port" 2>/dev/null; then
            CHROMEDRIVER="http://127.0.0.1:$port"
            export CHROMEDRIVER
            break
        fi
        sleep 0.1
    done
    if [ -z "${CHROMEDRIVER:-}" ]; then
        echo "chromedriver did not start:" >&2
        cat target/chromedriver.log >&2
    fi
else
    echo "installing the console's test tools failed:" >&2
    cat "$console_log" >&2
fi

cargo test --workspace --locked
