#!/usr/bin/env bash
# The end-to-end demo on the local simulator: no Azure subscription needed.
# `make demo` runs it inside the project's virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."

. examples/demo_lib.sh

step "Start the ARM simulator with examples/fleet.yaml (20x faster than real time)"
start_sim examples/fleet.yaml 20

DEV=00000000-0000-0000-0000-000000000001
PROD=00000000-0000-0000-0000-000000000002

step "Inventory of both subscriptions: the full and the status listing, paged (never a request per VM); production marked, stopped-but-billed called out"
vmctl list -s "$DEV" -s "$PROD" --show-tags app

step "Only the VMs that are stopped but still billed, ready to paste into a change ticket"
vmctl list -s "$DEV" -s "$PROD" --power-state stopped -o markdown

step "One VM in detail: its pending maintenance explained"
vmctl show -g rg-web web-01

step "Pending platform maintenance across both subscriptions, most urgent first"
vmctl maintenance status -s "$DEV" -s "$PROD"

step "Start the allowed maintenance of the web tier: one update domain per wave (short pause for the demo)"
vmctl maintenance start -s "$DEV" -g rg-web --pause 2s --yes -o markdown

step "Deallocate the web tier and the shop: the plan first (--dry-run sends no write)"
vmctl deallocate -s "$DEV" -s "$PROD" -g rg-web -g rg-shop-prod --dry-run

step "For real, with a change ticket: --yes alone never includes production, so the shop is untouched"
vmctl deallocate -s "$DEV" -s "$PROD" -g rg-web -g rg-shop-prod --yes --ticket CHG-1001 \
  --journal "$work/run.jsonl" --report "$work/report.md" -o markdown

step "The production shop is still running"
vmctl list -s "$PROD" -g rg-shop-prod

step "stop without --keep-allocation is refused: a stopped VM is still billed (exit code 4)"
vmctl stop -g rg-legacy --yes || echo "(exit code $?)"

step "The plain Azure SDK, pointed at the simulator by the environment alone"
python examples/sdk_quickstart.py rg-legacy legacy-01

step "What the simulator served (GET /_sim/stats)"
python - <<'PY'
import json, os, ssl, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
stats = json.load(urllib.request.urlopen(os.environ["VMCTL_ARM_ENDPOINT"] + "/_sim/stats", context=ctx))
print(f"{stats['requests']} requests: {stats['reads']} reads, {stats['writes']} writes, "
      f"{stats['throttled']} throttled")
for op, n in stats["by_operation"].items():
    print(f"  {op:<32} {n}")
PY

step "Last: the evidence section of the run's report (the Activity Log's own record), and the bundle for the ticket"
vmctl evidence --journal "$work/run.jsonl"
vmctl report "$work/run.jsonl" --bundle "$work/CHG-1001" >/dev/null
(cd "$work/CHG-1001" && ls && sha256sum -c SHA256SUMS)
