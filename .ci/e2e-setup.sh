#!/usr/bin/env bash
# Install what the JupyterLab end-to-end tests (tests/e2e) need on a fresh machine: Debian's
# Chromium and a font for readable screenshots. Playwright drives this Chromium through
# executable_path; it never downloads a browser of its own. Idempotent and quiet; run as root.
set -euo pipefail

packages=(chromium fonts-dejavu-core)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    echo "e2e-setup: installing ${missing[*]}"
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "e2e-setup: apt-get failed" >&2
        exit 1
    fi
fi

if [[ ! -x /usr/bin/chromium ]]; then
    echo "e2e-setup: /usr/bin/chromium is missing after the install" >&2
    exit 1
fi
echo "e2e-setup: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) ready"
