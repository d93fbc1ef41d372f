"""Frozen dataclasses that cross module lines. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
class InstanceView:
    """What `show` renders: the VM plus its raw instance view (a JSON-able dict)."""

    vm: Vm
    raw: dict[str, Any]
