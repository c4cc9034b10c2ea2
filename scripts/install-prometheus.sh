#!/usr/bin/env bash
# Install Debian's prometheus package (the server and promtool) for the test
# against a real Prometheus (crates/rumor-cli/tests/prometheus.rs).
# Does nothing when both are already there; skips with a message when not
# root or without apt. Leaves no Prometheus service running: the package's
# postinst would start one (invoke-rc.d, or systemd where it runs), so a
# temporary /usr/sbin/policy-rc.d forbids it, and any prometheus process the
# install started anyway is stopped.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "install-prometheus: prometheus already installed at $(command -v prometheus)"
    exit 0
fi
. "$(dirname "$0")/apt-guard.sh"
apt_guard prometheus "Prometheus test"

# Prometheus processes that were running before: left alone.
before=$(pgrep -x prometheus || true)

# Forbid the postinst to start the service (exit 101: action not allowed).
# An existing policy-rc.d is put back afterwards.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
fi
restore() {
    if [ -n "$saved" ]; then
        cp -p "$saved" "$policy"
        rm -f "$saved"
    else
        rm -f "$policy"
    fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null

# Belt and braces: stop a service the install started all the same, and any
# prometheus process that was not running before.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
for pid in $(pgrep -x prometheus || true); do
    case " $(echo $before) " in
        *" $pid "*) ;;
        *)
            echo "install-prometheus: stopping prometheus (pid $pid) started by the install"
            kill "$pid" 2>/dev/null || true
            ;;
    esac
done

echo "install-prometheus: installed $(prometheus --version 2>&1 | head -n 1)"
