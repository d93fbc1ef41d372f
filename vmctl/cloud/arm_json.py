"""ARM's VM JSON -> vmctl models, and the join of the two VM listings. Pure: no SDK, no I/O.

Azure's `statusOnly=true` listing is sparse (wire contract §15, a real capture): `id`, `name`,
`type`, `location` and `properties {vmId, provisioningState, hardwareProfile: {}, instanceView
{platformFaultDomain, statuses}}`: no tags, size, zones, storage profile, availability set or
update domain. So a VM is built from the *full* listing (the model: tags, size, placement, disks,
priority, scale set, capabilities) joined by id with the *status* listing (power state). Whatever
one side lacks is marked, never guessed: a VM missing from the full listing is `unreadable`; one
without a status gets `VmStatus(read=False)` so its instance view is read; maintenance that the
status listing does not carry stays `maintenance_known=False`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from sys import intern
from typing import Any, Iterable, Mapping, cast

from ..models import Maintenance, Vm, VmStatus
from ..timefmt import parse_iso
from . import Event, GraphRow, InstanceViewJson

NOT_IN_FULL_LISTING = ("not in the full VM listing (created or changed between the two listings, or Azure "
                       "left it out): its tags and properties are unknown")


Json = dict[str, Any]  # ARM JSON as it came off the wire: untyped until a function here reads it
JsonView = Mapping[str, Any]  # the same, read-only (an instance view passed in)


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    return parse_iso(str(value))


def _last(resource_id: str | None) -> str | None:
    return resource_id.rstrip("/").rsplit("/", 1)[-1] if resource_id else None


def maintenance_from_json(mrs: Json | None) -> Maintenance | None:
    if not mrs:
        return None
    return Maintenance(
        allowed=bool(mrs.get("isCustomerInitiatedMaintenanceAllowed")),
        self_service_start=_ts(mrs.get("preMaintenanceWindowStartTime")),
        self_service_end=_ts(mrs.get("preMaintenanceWindowEndTime")),
        scheduled_start=_ts(mrs.get("maintenanceWindowStartTime")),
        scheduled_end=_ts(mrs.get("maintenanceWindowEndTime")),
        last_result=mrs.get("lastOperationResultCode"), last_message=mrs.get("lastOperationMessage"),
    )


_CODES: dict[tuple[str, ...], tuple[str, bool, str]] = {}  # statuses' codes -> (power, hibernated, provisioning)
_SHARED: dict[tuple[object, ...], VmStatus] = {}  # one VmStatus per distinct value without maintenance
_KEEP = 4096  # at most this many of each (a fleet has a handful; odd codes beyond it are read each time)


def _read_codes(codes: tuple[str, ...]) -> tuple[str, bool, str]:
    """(power state, hibernated, provisioning state) from an instance view's status codes."""
    power, hibernated, prov = "unknown", False, ""
    for code in codes:
        low = code.lower()
        if low.startswith("powerstate/"):
            power = code.split("/", 1)[1].lower()
        elif low == "hibernationstate/hibernated":
            hibernated = True
        elif low.startswith("provisioningstate/"):
            prov = code.split("/")[1].capitalize()
    return power, hibernated, prov


def status_from_view(view: JsonView | None, provisioning: str | None = None,
                     maintenance_known: bool = True) -> VmStatus:
    """An instance view (bare, or nested in a VM / a status listing item) -> VmStatus.

    `maintenance_known`: whether this source would carry maintenanceRedeployStatus when pending
    (an instance view does; a status listing item may not).

    A fleet has few distinct statuses (running, succeeded, fault domain 0, ...): the codes are read
    once per distinct list of codes, and a status without maintenance is one shared (frozen) object
    per distinct value, not one per VM (a listing of 50,000 VMs builds a handful)."""
    iv = view or {}
    statuses = iv.get("statuses") or []
    if not statuses:
        return VmStatus(provisioning_state=provisioning or "", read=False)
    codes = tuple([s.get("code") or "" for s in statuses])
    read = _CODES.get(codes)
    if read is None:
        read = _read_codes(codes)
        if len(_CODES) < _KEEP:
            _CODES[codes] = read
    power, hibernated, prov = read
    mrs = iv.get("maintenanceRedeployStatus")
    ud, fd = iv.get("platformUpdateDomain"), iv.get("platformFaultDomain")
    if mrs:
        return VmStatus(power_state=power, provisioning_state=provisioning or prov, hibernated=hibernated,
                        update_domain=ud, fault_domain=fd, maintenance=maintenance_from_json(mrs),
                        maintenance_known=True)
    key = (power, provisioning or prov, hibernated, ud, fd, maintenance_known)
    try:
        return _SHARED[key]
    except KeyError:
        pass
    except TypeError:  # a domain that is not a number (unhashable): not shared
        return VmStatus(power, provisioning or prov, hibernated, ud, fd, None, maintenance_known)
    st = VmStatus(power, provisioning or prov, hibernated, ud, fd, None, maintenance_known)
    if len(_SHARED) < _KEEP:
        _SHARED[key] = st
    return st


MODEL_KEYS = ("subscription_id", "resource_group", "name", "id", "location", "size", "provisioning_state",
              "availability_set", "zones", "tags", "ephemeral_os_disk", "hibernation_enabled", "priority",
              "scale_set", "os_type")
ModelValues = tuple[Any, ...]  # model_fields' values in MODEL_KEYS order: a third of a dict's memory


def model_values(doc: Json) -> ModelValues:
    """The model part of a VM (full listing or GET), as a tuple in MODEL_KEYS order."""
    props = doc.get("properties") or {}
    storage = props.get("storageProfile") or {}
    os_disk = storage.get("osDisk") or {}
    diff = os_disk.get("diffDiskSettings") or {}
    parts = doc["id"].split("/")
    # values that repeat across a fleet (group, region, size, tags) are interned: one string each,
    # not one per VM, so a 50,000-VM inventory stays small
    return (
        intern(parts[2].lower()), intern(parts[4]), doc.get("name") or parts[-1], doc["id"],
        intern(doc.get("location", "")), intern((props.get("hardwareProfile") or {}).get("vmSize", "")),
        intern(props.get("provisioningState", "")), _last((props.get("availabilitySet") or {}).get("id")),
        tuple(doc.get("zones") or ()),
        {intern(k): intern(v) if isinstance(v, str) else v for k, v in (doc.get("tags") or {}).items()},
        (diff.get("option") or "").lower() == "local",
        bool((props.get("additionalCapabilities") or {}).get("hibernationEnabled")),
        props.get("priority") or "Regular", _last((props.get("virtualMachineScaleSet") or {}).get("id")),
        os_disk.get("osType", ""),
    )


def model_fields(doc: Json) -> Json:
    """The model part of a VM (full listing or GET): everything but its run-time status."""
    return dict(zip(MODEL_KEYS, model_values(doc)))


def with_status(fields: Json, st: VmStatus, subscription_name: str, unreadable: str = "") -> Vm:
    return Vm(**{**fields, "provisioning_state": st.provisioning_state or fields.get("provisioning_state", "")},
              power_state=st.power_state, hibernated=st.hibernated, update_domain=st.update_domain,
              fault_domain=st.fault_domain if st.fault_domain is not None else fields.get("fault_domain"),
              maintenance=st.maintenance, maintenance_known=st.maintenance_known,
              subscription_name=subscription_name, unreadable=unreadable)


def vm_from_json(doc: Json, subscription_name: str = "", view: JsonView | None = None) -> Vm:
    """One VM document (GET with $expand=instanceView, or a full-shape list item) -> Vm."""
    props = doc.get("properties") or {}
    iv = view if view is not None else props.get("instanceView")
    return with_status(model_fields(doc), status_from_view(iv, props.get("provisioningState")), subscription_name)


def status_item(doc: Json) -> tuple[str, VmStatus, tuple[str, ...]]:
    """A status listing item -> (key, its status, the little the item says about the VM itself)."""
    props = doc.get("properties") or {}
    st = status_from_view(props.get("instanceView"), props.get("provisioningState"), maintenance_known=False)
    vm_id = doc["id"]
    # a tuple (id, name, location), not a dict: kept for every VM, read only for the few the full
    # listing lacks (`_status_only_vm` splits the id then)
    return vm_id.lower(), st, (vm_id, doc.get("name") or "", doc.get("location", ""))


StatusListing = dict[str, tuple[VmStatus, tuple[str, ...]]]  # VM key -> (its status, what the item names:
# id, name, location)


def status_listing(items: Iterable[Json]) -> StatusListing:
    """A status listing's items by VM key.

    If any item carries maintenanceRedeployStatus, the listing is one that carries it where
    maintenance is pending, so its absence elsewhere means none pending; otherwise it stays
    unknown (Azure does not establish that status listings carry it: wire contract §11, §15)."""
    out: StatusListing = {}
    for d in items:
        key, st, ident = status_item(d)
        out[key] = (st, ident)
    if any(st.maintenance is not None for st, _ in out.values()):
        out = {k: (replace(st, maintenance_known=st.read), ident) for k, (st, ident) in out.items()}
    return out


_UNREAD = VmStatus(read=False)


def join_listings(models: Iterable[Json | ModelValues], statuses: StatusListing,
                  subscription_name: str) -> list[Vm]:
    """Full-listing model fields joined by id with status-listing items, in full-listing order;
    VMs only the status listing has come last, `unreadable`. (Each Vm is built in one call from
    the model tuple: this runs once per VM of the fleet.)"""
    out: list[Vm] = []
    append = out.append
    left = dict(statuses)  # status items no full-listing VM has claimed yet
    found: tuple[VmStatus, tuple[str, ...]] | None
    for item in models:
        values = tuple(item[k] for k in MODEL_KEYS) if isinstance(item, dict) else item
        sub, group, name, vm_id, location, size, prov, avset, zones, tags, eph, hib, priority, scale_set, os_type = values
        key = vm_id.lower()
        found = left.pop(key, None)
        if found is None:
            found = statuses.get(key)  # listed twice by the full listing: the same status again
        st = found[0] if found is not None else _UNREAD
        append(Vm(sub, group, name, vm_id, location, size, st.power_state, st.provisioning_state or prov,
                  subscription_name, st.hibernated, avset, st.update_domain, st.fault_domain, zones, tags,
                  st.maintenance, eph, hib, priority, scale_set, os_type, False, "", st.maintenance_known))
    for st, ident in left.values():
        append(_status_only_vm(st, ident, subscription_name))
    return out


def _status_only_vm(st: VmStatus, ident: tuple[str, ...], subscription_name: str) -> Vm:
    """A VM the status listing has and the full listing lacks: its tags and properties are unknown."""
    vm_id, name, location = ident
    parts = vm_id.split("/")
    return Vm(intern(parts[2].lower()), intern(parts[4]), name or parts[-1], vm_id, intern(location),
              power_state=st.power_state, provisioning_state=st.provisioning_state, hibernated=st.hibernated,
              update_domain=st.update_domain, fault_domain=st.fault_domain, maintenance=st.maintenance,
              maintenance_known=st.maintenance_known, subscription_name=subscription_name,
              unreadable=NOT_IN_FULL_LISTING)


def instance_view_of(doc: Json) -> InstanceViewJson:
    """The instance view of a VM read with `$expand=instanceView`, as ARM returned it."""
    return cast(InstanceViewJson, (doc.get("properties") or {}).get("instanceView") or {})


def _value(v: Any) -> str:
    """A localized string ({value, localizedValue}) or a plain one -> its value."""
    return str(v.get("value", "")) if isinstance(v, dict) else str(v or "")


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


def event_from_json(e: Json) -> Event:
    """An Activity Log event (ARM's camelCase JSON) -> the fields evidence keeps (all in its $select)."""
    props = e.get("properties") or {}
    out: Event = {
        "eventDataId": _opt(e.get("eventDataId")), "correlationId": _opt(e.get("correlationId")),
        "operationName": _value(e.get("operationName")), "status": _value(e.get("status")),
        "subStatus": _value(e.get("subStatus")), "eventName": _value(e.get("eventName")),
        "caller": _opt(e.get("caller")), "eventTimestamp": _opt(e.get("eventTimestamp")),
        "submissionTimestamp": _opt(e.get("submissionTimestamp")), "operationId": _opt(e.get("operationId")),
        "resourceId": _opt(e.get("resourceId")), "resourceGroupName": _opt(e.get("resourceGroupName")),
        "level": _opt(e.get("level")), "clientRequestId": _opt((e.get("httpRequest") or {}).get("clientRequestId")),
    }
    if props.get("statusMessage"):
        out["statusMessage"] = str(props["statusMessage"])
    return out


# ---------------------------------------------------------------- Azure Resource Graph (wire contract §13.4)
def _s(v: Any) -> str:
    return "" if v is None else str(v)


def graph_row(d: Json) -> GraphRow:
    """A row of the fleet query as it came (objectArray) -> its 14 typed columns; a column Azure
    left out is `""` (Kusto's tostring(null)), tags `{}`."""
    tags = d.get("tags")
    return {"id": _s(d.get("id")), "name": _s(d.get("name")), "resourceGroup": _s(d.get("resourceGroup")),
            "subscriptionId": _s(d.get("subscriptionId")), "location": _s(d.get("location")),
            "tags": {str(k): _s(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
            "vmSize": _s(d.get("vmSize")), "powerState": _s(d.get("powerState")),
            "availabilitySetId": _s(d.get("availabilitySetId")), "zone": _s(d.get("zone")),
            "vmssId": _s(d.get("vmssId")), "osDiskEphemeral": _s(d.get("osDiskEphemeral")),
            "hibernationEnabled": _s(d.get("hibernationEnabled")), "priority": _s(d.get("priority"))}


def vm_from_graph_row(row: GraphRow, subscription_name: str) -> Vm:
    """A Resource Graph row -> Vm. What the query does not carry stays unknown, never guessed:
    provisioning state "", no update/fault domain, maintenance not known (§13.5: not reachable
    through Resource Graph). A row without a power state is `unknown` (its instance view is read).
    The resource group comes from the id (Resource Graph lower-cases `resourceGroup`)."""
    parts = row["id"].split("/")
    code = row["powerState"]
    power = code.split("/", 1)[1].lower() if code.lower().startswith("powerstate/") else "unknown"
    return Vm(subscription_id=intern((parts[2] if len(parts) > 2 else row["subscriptionId"]).lower()),
              resource_group=intern(parts[4] if len(parts) > 4 else row["resourceGroup"]),
              name=row["name"] or parts[-1], id=row["id"], location=intern(row["location"]),
              size=intern(row["vmSize"]), power_state=power, subscription_name=subscription_name,
              availability_set=_last(row["availabilitySetId"] or None), zones=(row["zone"],) if row["zone"] else (),
              tags={intern(k): intern(v) for k, v in row["tags"].items()},
              ephemeral_os_disk=row["osDiskEphemeral"].lower() == "local",
              hibernation_enabled=row["hibernationEnabled"].lower() == "true",
              priority=row["priority"] or "Regular", scale_set=_last(row["vmssId"] or None),
              maintenance_known=False)
