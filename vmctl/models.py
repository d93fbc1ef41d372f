"""Frozen dataclasses that cross module lines. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Power states as vmctl names them (the part after "PowerState/").
POWER_STATES = ("running", "starting", "stopping", "stopped", "deallocating", "deallocated", "unknown")


@dataclass(frozen=True)
class Maintenance:
    """A VM's maintenanceRedeployStatus: present only when platform maintenance is pending."""

    allowed: bool
    self_service_start: datetime | None = None
    self_service_end: datetime | None = None
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    last_result: str | None = None
    last_message: str | None = None

    def can_start_now(self, now: datetime) -> bool:
        """Customer-initiated maintenance is possible: allowed, and inside the self-service window."""
        if not self.allowed:
            return False
        if self.self_service_start and now < self.self_service_start:
            return False
        if self.self_service_end and now > self.self_service_end:
            return False
        return True


@dataclass(frozen=True)
class Vm:
    subscription_id: str
    resource_group: str
    name: str
    id: str
    location: str
    size: str = ""
    power_state: str = "unknown"
    provisioning_state: str = ""
    subscription_name: str = ""
    hibernated: bool = False
    availability_set: str | None = None
    update_domain: int | None = None
    fault_domain: int | None = None
    zones: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    maintenance: Maintenance | None = None
    ephemeral_os_disk: bool = False
    hibernation_enabled: bool = False
    priority: str = "Regular"
    scale_set: str | None = None
    os_type: str = ""
    production: bool = False
    # Why vmctl could not read this VM's tags and properties ("" = it could): such a VM counts as
    # production and no tag selector matches it, since no guard may rely on data that was absent.
    unreadable: str = ""
    # False when no source read so far carries maintenanceRedeployStatus (Azure's status listing
    # may leave it out): `maintenance` None then means "not read", not "none pending".
    maintenance_known: bool = True

    @property
    def key(self) -> str:
        """Case-insensitive identity (Azure resource IDs are case-insensitive)."""
        return self.id.lower()

    @property
    def stopped_but_billed(self) -> bool:
        return self.power_state == "stopped"

    @property
    def flags(self) -> tuple[str, ...]:
        out = []
        if self.ephemeral_os_disk:
            out.append("ephemeral-os")
        if self.hibernation_enabled:
            out.append("hibernation")
        if self.priority in ("Spot", "Low"):
            out.append("spot")
        if self.scale_set:
            out.append("vmss")
        return tuple(out)

    def tag(self, name: str) -> str | None:
        """Tag value by case-insensitive name, as Azure treats tag names."""
        low = name.lower()
        for k, v in self.tags.items():
            if k.lower() == low:
                return v
        return None


@dataclass(frozen=True)
class VmStatus:
    """What a status listing item or an instance view says about a VM's run-time state."""

    power_state: str = "unknown"
    provisioning_state: str = ""
    hibernated: bool = False
    update_domain: int | None = None
    fault_domain: int | None = None
    maintenance: Maintenance | None = None
    maintenance_known: bool = False   # the source carries maintenanceRedeployStatus where pending
    read: bool = True                 # False: the source had no status for this VM
