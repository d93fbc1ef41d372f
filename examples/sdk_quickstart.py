"""The plain Azure SDK against the simulator: exactly the code you would run against Azure.

Run with the simulator's environment loaded (`set -a; . sim.env; set +a`):
    python examples/sdk_quickstart.py [RESOURCE_GROUP VM_NAME]
"""
import os, sys, time, uuid
from datetime import datetime, timedelta, timezone
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.monitor import MonitorManagementClient

rg, name = (sys.argv[1], sys.argv[2]) if len(sys.argv) > 2 else ("rg-legacy", "legacy-01")
cred, sub, arm = DefaultAzureCredential(), os.environ["AZURE_SUBSCRIPTION_ID"], os.environ["VMCTL_ARM_ENDPOINT"]
compute = ComputeManagementClient(cred, sub, base_url=arm)

print(f"VMs in subscription {sub}:")
for vm in compute.virtual_machines.list_all(status_only="true"):
    power = next(s.display_status for s in vm.instance_view.statuses if s.code.startswith("PowerState/"))
    print(f"  {vm.id.split('/')[4]:<14} {vm.name:<14} {power}")

correlation_id, started = str(uuid.uuid4()), time.monotonic()
print(f"\npowering off {rg}/{name} (correlation id {correlation_id}) ...")
# Compute sends no Retry-After, so the SDK would sleep its default 30 s between polls: choose the interval
compute.virtual_machines.begin_power_off(rg, name, headers={"x-ms-correlation-request-id": correlation_id},
                                         polling_interval=1).result()
state = [s.display_status for s in compute.virtual_machines.instance_view(rg, name).statuses]
print(f"done in {time.monotonic() - started:.1f} s: {', '.join(state)}")

monitor = MonitorManagementClient(cred, sub, base_url=arm)
since = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
query = f"eventTimestamp ge '{since}' and correlationId eq '{correlation_id}'"
deadline, events = time.monotonic() + 120, []
# events arrive out of order: wait for the operation's start and its end
while time.monotonic() < deadline and not ({"Started", "Succeeded"} <= {e.status.value for e in events}
                                           or any(e.status.value == "Failed" for e in events)):
    time.sleep(1)  # the Activity Log lags the operation (ingestion delay)
    events = list(monitor.activity_logs.list(filter=query))
print("\nActivity Log evidence:")
for e in sorted(events, key=lambda e: e.event_timestamp):
    print(f"  {e.event_timestamp:%H:%M:%S} {e.status.value:<10} {e.operation_name.value}  by {e.caller}")
sys.exit(0 if events else 1)
