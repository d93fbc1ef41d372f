#!/usr/bin/env bash
# The guest side, end to end on the simulator: a `vmctl guest watch` per VM (local processes
# against each VM's IMDS view), `vmctl restart` from the operator's side, and one report that
# joins both. app-1 and app-2 drain and approve; app-3's drain fails, so it waits for NotBefore.
# `make demo` runs it after examples/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=60   # 15 minutes of Reboot notice last 15 s
. examples/demo_lib.sh

step "Start the simulator with examples/guest-fleet.yaml (${SCALE}x faster than real time), IMDS per VM"
start_sim examples/guest-fleet.yaml "$SCALE"

step "A watcher inside each VM: drain hook (stop taking work, finish in-flight), recover hook (rejoin)"
mkdir -p "$work/guest"
cat >"$work/drain.sh" <<'SH'
#!/bin/sh
echo "$(date +%T) $VMCTL_VM_NAME: draining for $VMCTL_EVENT_TYPE ($VMCTL_EVENT_SOURCE), $VMCTL_DEADLINE_SECONDS s allowed"
sleep 2
[ "$VMCTL_VM_NAME" != app-3 ] || { echo "$VMCTL_VM_NAME: the queue would not drain" >&2; exit 1; }
echo "$(date +%T) $VMCTL_VM_NAME: drained"
SH
cat >"$work/recover.sh" <<'SH'
#!/bin/sh
echo "$(date +%T) $VMCTL_VM_NAME: back in the pool"
SH
chmod +x "$work/drain.sh" "$work/recover.sh"
for vm in app-1 app-2 app-3; do
  vmctl guest watch --imds-endpoint "$VMCTL_SIM_IMDS_URL/vm/$vm" --journal "$work/guest/$vm.jsonl" \
    --drain-hook "$work/drain.sh" --recover-hook "$work/recover.sh" --poll-interval 0.25 --margin 2 \
    >"$work/$vm.log" 2>&1 &
  pids+=($!)
  echo "  $vm: vmctl guest watch --imds-endpoint \$VMCTL_SIM_IMDS_URL/vm/$vm --drain-hook drain.sh --recover-hook recover.sh"
done

# IMDS answers a VM's first call late and lets events flow a while after it (Azure: up to 2 and 5 min)
python - <<'PY'
import json, os, ssl, time, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    vms = json.load(urllib.request.urlopen(os.environ["VMCTL_ARM_ENDPOINT"] + "/_sim/events", context=ctx))["vms"]
    if all(vms.get(n, {}).get("flowing") for n in ("app-1", "app-2", "app-3")):
        print("  every VM's Scheduled Events flow to its watcher")
        break
    time.sleep(0.2)
else:
    raise SystemExit("the watchers did not reach their IMDS")
PY

step "The operator restarts the app tier: Azure announces a User Reboot inside each VM and holds the restart"
start=$(date +%s.%N)
vmctl restart -g rg-app --yes --journal "$work/restart.jsonl"
end=$(date +%s.%N)
python -c "print(f'  restart took {$end - $start:.1f} s real (x$SCALE: {($end - $start) * $SCALE / 60:.1f} min of Azure time)')"

step "What each watcher did (its own log; the hooks' output is in its journal)"
for vm in app-1 app-2; do   # their events end after the reboot (Started for a while): then the recover hook runs
  for _ in $(seq 1 100); do grep -q "recover hook" "$work/$vm.log" && break; sleep 0.1; done
done
for vm in app-1 app-2 app-3; do grep -v -e '^vmctl guest watch:' -e 'DocumentIncarnation' "$work/$vm.log" | sed "s/^/  $vm | /"; done

step "One story, host and guest: vmctl report joins the run's journal with the guest journals (times in real seconds: x$SCALE for Azure's)"
vmctl report "$work/restart.jsonl" --guest-journal "$work/guest"

step "The simulator's own record of the events (GET /_sim/events)"
python - <<'PY'
import json, os, ssl, urllib.request
from datetime import datetime
ctx = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
scale = float(os.environ.get("VMCTL_PACE_SCALE", "1"))
doc = json.load(urllib.request.urlopen(os.environ["VMCTL_ARM_ENDPOINT"] + "/_sim/events", context=ctx))
t = lambda s: datetime.fromisoformat(s).timestamp() if s else None
for e in sorted(doc["events"], key=lambda e: e["resources"]):
    notice = (t(e["notBefore"]) - t(e["created"])) * scale
    approved = f"approved after {(t(e['approvedAt']) - t(e['created'])) * scale:5.0f} s" if e["approvedAt"] else "not approved    "
    started = (t(e["startedAt"]) - t(e["created"])) * scale if e["startedAt"] else None
    print(f"  {e['resources'][0]}: {e['eventType']} ({e['eventSource']}), notice {notice:.0f} s, {approved}, "
          f"started after {started:.0f} s, {e['secondsSavedVsNotBefore'] * scale:.0f} s saved (Azure time)")
PY
stats=$(python - <<'PY'
import json, os, ssl, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
s = json.load(urllib.request.urlopen(os.environ["VMCTL_ARM_ENDPOINT"] + "/_sim/stats", context=ctx))["scheduled_events"]
print(f"events created {s['created']}, approved {s['approved']}, expired {s['expired']}")
PY
)
echo "  $stats"
