#!/usr/bin/env bash
# Every check CI runs, in the order that fails fastest: formatting, lints, then every test
# (engine unit, property and vector tests; the store conformance suite; end-to-end tests
# against real server processes, one of which checks the served OpenAPI document against the
# running server with schemathesis). Needs the Rust toolchain and Python 3 with network access
# to PyPI the first time; schemathesis is installed, pinned, into target/schemathesis-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

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

# The install downloads while formatting, lints and the build run.
mkdir -p target
install_schemathesis >"$install_log" 2>&1 &
installer=$!

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

cargo test --workspace --locked
