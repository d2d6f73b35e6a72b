#!/usr/bin/env bash
# Install what the broker tests (tests/test_broker.py) and benchmarks/bench_broker.py need on a
# fresh machine: Debian's redis-server. It starts no service here; the tests start their own
# server on a free loopback port, in a temporary folder, with persistence off, and stop it.
# Idempotent; run as root (apt-get).
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "redis-setup: $(redis-server --version | cut -d' ' -f1-3) already installed"
    exit 0
fi

echo "redis-setup: installing redis-server"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq redis-server >/dev/null

if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-setup: redis-server is missing after the install" >&2
    exit 1
fi
echo "redis-setup: $(redis-server --version | cut -d' ' -f1-3) ready"
