#!/usr/bin/env bash
# Validates the deployment recipes in deploy/ (see deploy/README.md). Needs systemd-analyze, strace,
# promtool (Debian's prometheus) and kubernetes-validate (PyPI); .ci/run installs them.
# usage: Tests/deploy/check-recipes.sh [path to a tally binary]
set -euo pipefail
cd "$(dirname "$0")/../.."
tally=$(realpath "${1:-.build/debug/tally}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "-- systemd: verify, security exposure, the node's system calls against the unit's filter"
# verify checks that ExecStart's program exists: point it at the binary under test.
sed "s|/usr/local/bin/tally|$tally|" deploy/systemd/tally.service > "$work/tally.service"
systemd-analyze verify "$work/tally.service"
systemd-analyze security --offline=yes --threshold=20 "$work/tally.service" | tail -1
Tests/deploy/syscall-check.py --tally "$tally" --unit deploy/systemd/tally.service

echo "-- Kubernetes: schemas, and the files the region configs expect under /etc/tally"
python3 -m kubernetes_validate --strict --quiet -k 1.32.0 deploy/kubernetes/*.yaml
Tests/deploy/kubernetes-check.py deploy/kubernetes/tally.yaml deploy/regions/*.yaml

echo "-- Prometheus: alert rules, their unit tests, the scrape config"
(cd deploy/prometheus && promtool check rules tally-alerts.yaml && promtool test rules tally-alerts-test.yaml \
    && promtool check config --syntax-only prometheus.yaml)
# Every alert's runbook_url names a section of docs/operations.md.
python3 - <<'PY'
import re, sys
anchors = {re.sub(r"[^a-z0-9 -]", "", line[4:].strip().lower()).replace(" ", "-")
           for line in open("docs/operations.md") if line.startswith("### ")}
urls = re.findall(r'runbook_url: "docs/operations.md#([^"]+)"', open("deploy/prometheus/tally-alerts.yaml").read())
missing = sorted(set(urls) - anchors)
if not urls or missing:
    sys.exit(f"runbook sections missing from docs/operations.md: {missing or 'no runbook_url at all'}")
print(f"{len(urls)} runbook links, every one a section of docs/operations.md")
PY

echo "-- container image definition (read, not built: no container engine here)"
dockerfile=deploy/container/Dockerfile
grep -Eq '^FROM swift:[^ ]+ AS build' "$dockerfile" || { echo "$dockerfile: no build stage FROM the official swift image"; exit 1; }
[[ $(grep -c '^FROM ' "$dockerfile") -ge 2 ]] || { echo "$dockerfile: not a multi-stage build"; exit 1; }
grep -q -- '--static-swift-stdlib' "$dockerfile" || { echo "$dockerfile: the Swift runtime is not linked statically"; exit 1; }
user=$(grep -E '^USER ' "$dockerfile" | tail -1 | awk '{print $2}')
[[ -n "$user" && "${user%%:*}" != root && "${user%%:*}" != 0 ]] || { echo "$dockerfile: runs as root"; exit 1; }
echo "recipes valid"
