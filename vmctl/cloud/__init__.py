"""The seam between vmctl's logic and Azure: a small protocol, implemented by `cloud.azure`.

Importing this package is cheap; the SDK is imported only when `make_client` is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..models import Vm

CLOUDS: dict[str, dict[str, str]] = {
    "AzureCloud": {"arm": "https://management.azure.com", "scope": "https://management.azure.com/.default",
                   "authority": "login.microsoftonline.com"},
    "AzureUSGovernment": {"arm": "https://management.usgovcloudapi.net",
                          "scope": "https://management.usgovcloudapi.net/.default",
                          "authority": "login.microsoftonline.us"},
    "AzureChinaCloud": {"arm": "https://management.chinacloudapi.cn",
                        "scope": "https://management.chinacloudapi.cn/.default",
                        "authority": "login.chinacloudapi.cn"},
}


@dataclass(frozen=True)
class Connection:
    """Where ARM is and how to get a token for it; the only difference between Azure and the simulator."""

    cloud: str = "AzureCloud"
    arm_endpoint: str | None = None

    @property
    def endpoint(self) -> str:
        return (self.arm_endpoint or CLOUDS[self.cloud]["arm"]).rstrip("/")

    @property
    def scope(self) -> str:
        return CLOUDS[self.cloud]["scope"]

    @property
    def authority(self) -> str:
        return CLOUDS[self.cloud]["authority"]


class FleetClient(Protocol):
    def subscription_name(self, subscription_id: str) -> str: ...

    def list_vms(self, subscription_id: str, subscription_name: str) -> list[Vm]: ...

    def resource_group_exists(self, subscription_id: str, resource_group: str) -> bool: ...

    def get_vm(self, subscription_id: str, resource_group: str, name: str,
               subscription_name: str = "") -> tuple[Vm, dict[str, Any]]: ...

    def request_count(self) -> int: ...


def make_client(connection: Connection) -> FleetClient:
    from .azure import AzureFleet

    return AzureFleet(connection)
