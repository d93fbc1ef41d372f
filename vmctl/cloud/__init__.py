"""The seam between vmctl's logic and Azure: a small protocol, implemented by `cloud.azure`.

Importing this package is cheap; the SDK is imported only when `make_client` is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol, TypedDict

from ..errors import VmctlError
from ..models import Vm, VmStatus

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


class StatusJson(TypedDict, total=False):
    """One instance-view status (`PowerState/running`, `ProvisioningState/succeeded`, ...)."""

    code: str
    level: str
    displayStatus: str
    message: str
    time: str


class AgentJson(TypedDict, total=False):
    vmAgentVersion: str
    statuses: list[StatusJson]


class PartJson(TypedDict, total=False):
    """A disk or an extension in an instance view."""

    name: str
    type: str
    statuses: list[StatusJson]


class InstanceViewJson(TypedDict, total=False):
    """A VM's instance view as ARM returns it (`$expand=instanceView`): the fields vmctl reads are
    named here; `vmctl show -o json` prints the whole object as it came, unknown fields included."""

    osName: str
    osVersion: str
    platformUpdateDomain: int
    platformFaultDomain: int
    statuses: list[StatusJson]
    vmAgent: AgentJson
    disks: list[PartJson]
    extensions: list[PartJson]


class Event(TypedDict, total=False):
    """One Activity Log event in the compact form vmctl keeps (`arm_json.event_from_json`): the
    localized-string fields (operationName, status, ...) reduced to their `value`."""

    eventDataId: str | None
    correlationId: str | None
    operationName: str
    status: str
    subStatus: str
    eventName: str
    caller: str | None
    eventTimestamp: str | None
    submissionTimestamp: str | None
    operationId: str | None
    resourceId: str | None
    resourceGroupName: str | None
    level: str | None
    clientRequestId: str | None
    statusMessage: str


OnHeaders = Callable[[dict[str, str]], None]  # sees each response's headers (rate-limit counters)


class GraphRow(TypedDict):
    """One row of vmctl's Resource Graph fleet query (wire contract §13.4): exactly its 14 columns.
    Every derived column is a string, `""` where the VM has no such property."""

    id: str
    name: str
    resourceGroup: str        # lower-case, as Resource Graph returns it
    subscriptionId: str
    location: str
    tags: dict[str, str]
    vmSize: str
    powerState: str           # PowerState/running, ...; "" when Resource Graph has no instance view yet
    availabilitySetId: str
    zone: str
    vmssId: str
    osDiskEphemeral: str      # "Local" for an ephemeral OS disk
    hibernationEnabled: str   # "true", "false" or ""
    priority: str             # Regular, Low, Spot or ""


@dataclass(frozen=True)
class GraphPage:
    """One page of a Resource Graph query, with what its headers said about the caller's quota."""

    rows: tuple[GraphRow, ...]
    total_records: int
    skip_token: str | None            # present while more rows remain
    truncated: bool                   # resultTruncated "true": the rows were capped, no paging possible
    quota_remaining: int | None       # x-ms-user-quota-remaining
    quota_resets_after: float | None  # x-ms-user-quota-resets-after, in seconds
    tenant_limit_hit: bool            # x-ms-tenant-subscription-limit-hit: the scope was cut to the first 10,000


class FleetClient(Protocol):
    connection: "Connection"  # where ARM is: the journal records it

    def subscription_name(self, subscription_id: str) -> str: ...

    def list_subscriptions(self) -> list[tuple[str, str]]:
        """(id, display name) of every subscription the identity can see: GET /subscriptions, every page."""

    def list_vms(self, subscription_id: str, subscription_name: str, before_page: Callable[[], object] | None = None,
                 on_headers: OnHeaders | None = None) -> list[Vm]:
        """Every VM of the subscription: full listing joined with the status listing. Every page
        request waits for `before_page()` (the caller's pacer) and shows its headers to `on_headers`."""

    def list_statuses(self, subscription_id: str, before_page: Callable[[], object] | None = None,
                      on_headers: OnHeaders | None = None) -> dict[str, VmStatus]:
        """The status listing alone, by VM key (lower-case id); pages as `list_vms`."""

    def instance_view(self, subscription_id: str, resource_group: str, name: str,
                      on_headers: OnHeaders | None = None, quick: bool = False) -> VmStatus:
        """One VM's instance view: power, update/fault domain, maintenanceRedeployStatus. Raises
        ThrottledError on a 429 the SDK's own retries did not outlast."""

    def resource_group_exists(self, subscription_id: str, resource_group: str) -> bool: ...

    def get_vm(self, subscription_id: str, resource_group: str, name: str,
               subscription_name: str = "") -> tuple[Vm, InstanceViewJson]: ...

    def refresh_credential(self) -> None:
        """Drop cached tokens and clients (after a 401), so the next request signs in again."""

    def begin_action(self, vm: Vm, action: str, *, correlation_id: str, hibernate: bool = False,
                     skip_shutdown: bool = False, on_headers: OnHeaders | None = None) -> "Accepted": ...

    def operation_status(self, subscription_id: str, url: str, on_headers: OnHeaders | None = None) -> "OperationStatus": ...

    def principal(self) -> dict[str, str]: ...

    def activity_events(self, subscription_id: str, flt: str, select: str | None = None,
                        on_headers: OnHeaders | None = None) -> list[Event]:
        """Every event of every page matching the OData filter, compacted."""

    def graph_page(self, query: str, *, subscriptions: list[str] | None = None,
                   management_groups: list[str] | None = None, skip_token: str | None = None,
                   top: int = 1000) -> GraphPage:
        """One page of an Azure Resource Graph query (POST /providers/Microsoft.ResourceGraph/resources)
        over the subscriptions, the management groups, or (neither) the tenant. A 429 is raised as
        ThrottledError (its retry_after from the quota headers); a scope with no readable
        subscription as AccessDeniedError."""
    # ComputeSchedule (the batch engine): each one POST, answered at once (not an LRO)
    def batch_execute(self, subscription_id: str, location: str, op_type: BatchOpType, ids: list[str], *,
                      correlation_id: str, retry: RetryPolicy | None,
                      on_headers: OnHeaders | None = None) -> list[BatchResult]:
        """Execute{Deallocate,Start,Hibernate} for up to 100 VM ids of one subscription and region;
        one result per id. Raises ThrottledError, RetryableError (the request may have landed),
        ActionError (the service refused the request) as begin_action does."""

    def batch_status(self, subscription_id: str, location: str, operation_ids: list[str], *, correlation_id: str,
                     on_headers: OnHeaders | None = None) -> list[BatchResult]:
        """GetOperationStatus for up to 100 operation ids."""

    def batch_cancel(self, subscription_id: str, location: str, operation_ids: list[str], *, correlation_id: str,
                     on_headers: OnHeaders | None = None) -> list[BatchResult]:
        """CancelOperations: those not started yet end Cancelled; each id's state after it."""

    def batch_errors(self, subscription_id: str, location: str, operation_ids: list[str],
                     on_headers: OnHeaders | None = None) -> list[BatchErrors]:
        """GetOperationErrors: every failed attempt of each operation."""


def make_client(connection: Connection) -> FleetClient:
    from .._startup import quiet

    with quiet():  # the SDK's modules: long-lived objects only (vmctl/_startup.py)
        from .azure import AzureFleet

    return AzureFleet(connection)


@dataclass(frozen=True)
class Accepted:
    """A write the service accepted: where to poll it and the ids that trace it."""

    status_url: str | None          # Azure-AsyncOperation (or Location) URL; None when it finished at once
    retry_after: float | None
    correlation_id: str
    client_request_id: str
    headers: dict[str, str]


class ThrottledError(VmctlError):
    """A 429: not yet. The caller waits `retry_after` seconds (its pacer blocks the bucket)."""

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RetryableError(VmctlError):
    """Known transient: 5xx, 408, a dropped connection. A 409 is never transient: Azure refuses
    an operation the VM's state does not allow (wire contract §15), and retrying it is wrong."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ActionError(VmctlError):
    """The service refused the action for this VM (e.g. 409 OperationNotAllowed); not retried.
    `message` is the whole sentence, `(code) Azure's message`; `code`, `azure_message` and
    `status` keep the parts."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"({code}) {message}" if code else message)
        self.code, self.azure_message, self.status = code, message, status


BatchOpType = Literal["Deallocate", "Start", "Hibernate"]
# ComputeSchedule's operation states (wire §12.4); terminal: Succeeded, Failed, Cancelled
BATCH_TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})


@dataclass(frozen=True)
class RetryPolicy:
    """ComputeSchedule's `executionParameters.retryPolicy`: `count` more attempts, each started
    within `window_minutes` of the request."""

    count: int
    window_minutes: int


@dataclass(frozen=True)
class BatchResult:
    """One item of a ComputeSchedule answer: a VM's operation, or why there is none (`error_code`,
    e.g. OperationConflict). `state` is the operation's (PendingScheduling ... Succeeded, Failed,
    Cancelled, Blocked); `op_error_*` its resourceOperationError."""

    resource_id: str
    operation_id: str | None = None
    state: str = ""
    error_code: str = ""
    error_details: str = ""
    op_error_code: str = ""
    op_error_details: str = ""
    completed_at: str | None = None


@dataclass(frozen=True)
class BatchAttemptError:
    code: str
    details: str
    timestamp: str | None = None
    operation_name: str = ""
    crp_operation_id: str = ""


@dataclass(frozen=True)
class BatchErrors:
    """GetOperationErrors for one operation: each failed attempt, and a request-level error."""

    operation_id: str
    errors: tuple[BatchAttemptError, ...] = ()
    request_error_code: str = ""
    request_error_details: str = ""


@dataclass(frozen=True)
class OperationStatus:
    status: str                      # InProgress | Succeeded | Failed | Canceled
    error_code: str = ""
    error_message: str = ""
    retry_after: float | None = None
    duration: float | None = None    # endTime - startTime of a finished operation's status document
