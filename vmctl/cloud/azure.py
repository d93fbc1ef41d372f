"""The ONLY module that imports azure.*: credential, clients, endpoints, JSON -> models, errors.

Reads (listings, instance views, operation status) go through `ARMPipelineClient.send_request`
(azure-mgmt-core's ARM client, with the policies ComputeManagementClient puts in its pipeline, in
the same order: credential, retries honouring Retry-After, TLS; see `read_pipeline`) and convert
ARM's JSON straight to vmctl models: deserializing into SDK models costs ~0.8 ms per VM (4 s for
5,000 VMs), the raw path ~0.2 ms. Importing azure.mgmt.compute (2.5 MB of operations, 1.4 MB of
models: a quarter of a second) is left to the commands that send an action. Holds no business rules.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar
from urllib.parse import urlsplit

import orjson
from azure.core.configuration import Configuration
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import policies
from azure.core.rest import HttpRequest, HttpResponse
from azure.identity import CredentialUnavailableError, DefaultAzureCredential
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

from .. import __version__
from ..errors import (
    AccessDeniedError,
    AzureError,
    CredentialError,
    EndpointError,
    NotFoundError,
    VmctlError,
)
from ..models import Vm, VmStatus
from ..timefmt import parse_iso
from . import (
    Accepted,
    ActionError,
    BatchAttemptError,
    BatchErrors,
    BatchOpType,
    BatchResult,
    Connection,
    Event,
    GraphPage,
    InstanceViewJson,
    OnHeaders,
    OperationStatus,
    RetryableError,
    RetryPolicy,
    ThrottledError,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.compute import ComputeManagementClient

from .arm_json import (
    ModelValues,
    StatusListing,
    event_from_json,
    graph_row,
    instance_view_of,
    join_listings,
    model_values,
    status_from_view,
    status_listing,
    vm_from_json,
)

COMPUTE_API = "2026-04-01"
RESOURCES_API = "2022-12-01"
# polls and watcher reads: the executor retries on its own schedule, so no SDK retries, and a dead
# endpoint must not hold the watcher for the SDK's default 300 s connection timeout
QUICK: dict[str, Any] = {"retry_total": 0, "connection_timeout": 20, "read_timeout": 60}
T = TypeVar("T")
# bytes read per call from a response (azure-core's default 4 KB: a 250 KB list page took 60 calls)
BLOCK = 256 * 1024


def transport_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """What requests would read from the environment on every request, read once.

    With its default `trust_env`, requests scans the whole environment for proxies twice and looks
    for ~/.netrc on each request (about 0.2 ms of CPU a request here, more with a large environment;
    51 requests for a 5,000-VM listing). When
    no proxy is configured, what the environment can still say is the CA bundle: it is passed as
    `connection_verify`, and the scan is turned off (azure-core's `use_env_settings`). With any
    *_proxy variable set, requests keeps reading the environment, so HTTPS_PROXY and NO_PROXY
    work exactly as in every other Azure SDK tool."""
    if any(k.lower().endswith("_proxy") for k in environ):
        return {}
    bundle = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
    return {"use_env_settings": False, **({"connection_verify": bundle} if bundle else {})}


LOGIN_HINT = ("Sign in with `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a "
              "service principal, or run where a managed or workload identity is available.")
TRIED = ("environment variables, workload identity, managed identity, shared token cache, VS Code, "
         "Azure CLI, Azure PowerShell and Azure Developer CLI")


def _float(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _duration(start: Any, end: Any) -> float | None:
    """How long the service says the operation ran (the status document's startTime/endTime)."""
    if not start or not end:
        return None
    try:
        seconds = (parse_iso(str(end)) - parse_iso(str(start))).total_seconds()
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _hms(value: str | None) -> float | None:
    """`x-ms-user-quota-resets-after` ("00:00:05", or "1.00:00:05" with days) -> seconds."""
    if not value:
        return None
    head, _, rest = value.strip().partition(":")
    days, _, hours = head.rpartition(".")
    parts = [hours, *rest.split(":")]
    try:
        if len(parts) != 3:
            return None
        return float(days or 0) * 86400 + float(parts[0]) * 3600 + float(parts[1]) * 60 + float(parts[2])
    except ValueError:
        return None


def _ratelimit(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("x-ms-ratelimit-remaining")}


def _error_parts(resp: Any) -> tuple[str, str]:
    try:
        body = resp.json()
        err = body.get("error", body)
        return str(err.get("code", "")), str(err.get("message", ""))
    except Exception:  # noqa: BLE001 - a non-JSON error body
        return "", (resp.text()[:200] if hasattr(resp, "text") else "")


def _credential_failure(text: str) -> str:
    """One sentence from DefaultAzureCredential's multi-line report: what was tried and why it failed."""
    tried = []
    for line in text.splitlines():
        line = line.strip()
        if line.endswith(("Credential:", "Credential")) or "Credential: " in line:
            name, _, why = line.partition(":")
            why = why.strip().split(". ")[0].rstrip(".")
            tried.append(f"{name.strip()} ({why})" if why else name.strip())
    if tried:
        return "No Azure credential worked; tried " + "; ".join(tried) + "."
    first = text.splitlines()[0] if text else "unknown error"
    return f"Signing in failed: {first}"


HTTP_LOG = logging.getLogger("vmctl.http")  # one line per HTTP exchange; `--verbose` shows them
_RATE_PREFIX = "x-ms-ratelimit-remaining-"


def _http_started(request: Any) -> None:
    request.context["vmctl_started"] = time.monotonic()


def _http_line(response: Any) -> None:
    """`GET /subscriptions/.../virtualMachines -> 200 in 0.12 s, request id ..., left: ...`: method,
    path (no query), status, time, Azure's request id and the throttle budgets it reported."""
    if not HTTP_LOG.isEnabledFor(logging.INFO):
        return
    try:
        req, resp = response.http_request, response.http_response
        started = response.context.get("vmctl_started") if response.context is not None else None
        took = f" in {time.monotonic() - started:.2f} s" if started else ""
        headers = {k.lower(): v for k, v in resp.headers.items()}
        left = ", ".join(f"{k[len(_RATE_PREFIX):]} {v}" for k, v in sorted(headers.items()) if k.startswith(_RATE_PREFIX))
        path = urlsplit(req.url).path
        rid = headers.get("x-ms-request-id", "-")
        HTTP_LOG.info("%s %s -> %s%s, request id %s%s", req.method, path, resp.status_code, took, rid,
                      f", left: {left}" if left else "")
    except Exception:  # noqa: BLE001 - a log line must never break a request
        HTTP_LOG.debug("could not describe an HTTP exchange", exc_info=True)


ReadPipeline = ARMPipelineClient[HttpRequest, HttpResponse]


def read_pipeline(credential: TokenCredential, endpoint: str, scope: str, **kwargs: Any) -> ReadPipeline:
    """An ARM client for raw reads: azure-core's documented way to a service (a `Configuration`
    and a pipeline client), with the policies ComputeManagementClient configures
    (`ComputeManagementClientConfiguration._configure`); ARMPipelineClient's standard pipeline puts
    them in the order ComputeManagementClient lists them (tests/test_read_pipeline.py compares the
    two). Nothing of azure.mgmt.compute is imported."""
    kwargs.setdefault("sdk_moniker", f"vmctl/{__version__}")
    config: Any = Configuration(**kwargs)  # the policies are typed per transport; this one is requests
    config.headers_policy = policies.HeadersPolicy(**kwargs)
    config.user_agent_policy = policies.UserAgentPolicy(**kwargs)
    config.proxy_policy = policies.ProxyPolicy(**kwargs)
    config.logging_policy = policies.NetworkTraceLoggingPolicy(**kwargs)
    config.http_logging_policy = ARMHttpLoggingPolicy(**kwargs)
    config.custom_hook_policy = policies.CustomHookPolicy(**kwargs)
    config.redirect_policy = policies.RedirectPolicy(**kwargs)
    config.retry_policy = policies.RetryPolicy(**kwargs)
    config.authentication_policy = ARMChallengeAuthenticationPolicy(credential, scope, **kwargs)
    return ARMPipelineClient(base_url=endpoint, config=config, **kwargs)


class AzureFleet:
    """FleetClient over the Azure SDK. Per subscription: one read pipeline (`read_pipeline`), and
    one ComputeManagementClient once an action is sent."""

    def __init__(self, connection: Connection) -> None:
        from ..preflight import check_tls_env

        check_tls_env()
        self.connection = connection
        # what every pipeline this fleet builds gets: big reads, the --verbose hooks, the environment read once
        self._pipeline_kwargs: dict[str, Any] = {
            "connection_data_block_size": BLOCK, "raw_request_hook": _http_started, "raw_response_hook": _http_line,
            **transport_settings(os.environ)}
        self.credential = DefaultAzureCredential(authority=connection.authority)
        self._clients: dict[str, ComputeManagementClient] = {}
        self._reads: dict[str, ReadPipeline] = {}
        self._monitors: dict[str, Any] = {}
        self._graph: Any = None
        self._schedulers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def refresh_credential(self) -> None:
        """After a 401: a new credential and new clients, so the next request gets a new token
        (the SDK's policy would keep presenting the cached one)."""
        with self._lock:
            self.credential = DefaultAzureCredential(authority=self.connection.authority)
            self._clients.clear()
            self._reads.clear()
            self._monitors.clear()
            self._graph = None
            self._schedulers.clear()

    def _cached(self, cache: dict[str, Any], subscription_id: str, factory: Callable[..., Any]) -> Any:
        """One SDK client per subscription and kind, created on first use."""
        with self._lock:
            c = cache.get(subscription_id)
            if c is None:
                c = cache[subscription_id] = factory(
                    self.credential, subscription_id, base_url=self.connection.endpoint,
                    credential_scopes=[self.connection.scope], **self._pipeline_kwargs)
            return c

    def client(self, subscription_id: str) -> ComputeManagementClient:
        from azure.mgmt.compute import ComputeManagementClient

        client: ComputeManagementClient = self._cached(self._clients, subscription_id, ComputeManagementClient)
        return client

    def reader(self, subscription_id: str) -> ReadPipeline:
        """The read pipeline of a subscription ("" for tenant-level reads): its own connection
        pool, as each ComputeManagementClient has."""
        with self._lock:
            c = self._reads.get(subscription_id)
            if c is None:
                c = self._reads[subscription_id] = read_pipeline(
                    self.credential, self.connection.endpoint, self.connection.scope, **self._pipeline_kwargs)
            return c

    # ------------------------------------------------------------------ raw ARM reads
    def _get(self, subscription_id: str, url: str, context: str,
             on_headers: Callable[[dict[str, str]], None] | None = None, throttled: bool = False,
             quick: bool = False) -> Any:
        """One GET through the SDK's pipeline (which retries 429/5xx honouring Retry-After). With
        `throttled`, a 429 that outlasts those retries is raised as ThrottledError for the caller's
        pacer; otherwise it is an AzureError. `quick`: no SDK retries and short timeouts (the caller
        has its own schedule: a watcher must not sit in one request's backoff)."""
        if not url.startswith("http"):
            url = self.connection.endpoint + url
        kw = QUICK if quick else {}
        # stream=True: the pipeline's ContentDecodePolicy leaves the body alone, so it is decoded
        # once, here (without it every page was parsed twice)
        resp = self._call(lambda: self.reader(subscription_id).send_request(HttpRequest("GET", url), stream=True,
                                                                            **kw), context)
        body = self._call(resp.read, context)
        if on_headers:
            on_headers({k.lower(): v for k, v in resp.headers.items()})
        if resp.status_code == 429 and throttled:
            raise ThrottledError(_float(resp.headers.get("Retry-After")) or 5.0, f"throttled while {context}")
        if resp.status_code == 404:
            code, message = _error_parts(resp)
            raise NotFoundError(self._not_found(code, message, context))
        if resp.status_code >= 400:
            raise self._http_error(resp.status_code, *_error_parts(resp), context=context)
        return orjson.loads(body)

    @staticmethod
    def _not_found(code: str, message: str, context: str) -> str:
        return f"{context}: {message or code or 'not found'}".rstrip(".") + "."

    def subscription_name(self, subscription_id: str) -> str:
        try:
            doc = self._get(subscription_id, f"/subscriptions/{subscription_id}?api-version={RESOURCES_API}",
                            f"subscription {subscription_id}")
        except NotFoundError:
            raise NotFoundError(
                f"Subscription {subscription_id} was not found, or this identity cannot see it.",
                "Check the ID (`az account list -o table`) or ask for Reader access on it.") from None
        return str(doc.get("displayName") or subscription_id)

    def list_subscriptions(self) -> list[tuple[str, str]]:
        # a tenant-level read: the SDK client it goes through is keyed "" (send_request uses the URL as given)
        return [(str(d.get("subscriptionId") or ""), str(d.get("displayName") or ""))
                for items in self._pages("", f"/subscriptions?api-version={RESOURCES_API}", "listing subscriptions")
                for d in items]

    def _pages(self, subscription_id: str, url: str, context: str, before_page: Callable[[], object] | None = None,
               on_headers: OnHeaders | None = None) -> Iterator[list[dict[str, Any]]]:
        """Each page's items, following nextLink; one request per page, each after `before_page()`
        (the caller's pacer) and its headers shown to `on_headers`."""
        next_url: str | None = url
        while next_url:
            if before_page is not None:
                before_page()
            page = self._get(subscription_id, next_url, context, on_headers)
            yield page.get("value") or []
            next_url = page.get("nextLink") or None

    def _vms_url(self, subscription_id: str) -> str:
        return f"/subscriptions/{subscription_id}/providers/Microsoft.Compute/virtualMachines?api-version={COMPUTE_API}"

    def _status_listing(self, subscription_id: str, before_page: Callable[[], object] | None = None,
                        on_headers: OnHeaders | None = None) -> StatusListing:
        pages = self._pages(subscription_id, self._vms_url(subscription_id) + "&statusOnly=true",
                            f"listing VM statuses in subscription {subscription_id}", before_page, on_headers)
        return status_listing(d for items in pages for d in items)

    def list_statuses(self, subscription_id: str, before_page: Callable[[], object] | None = None,
                      on_headers: OnHeaders | None = None) -> dict[str, VmStatus]:
        """The status listing alone (power state, provisioning, what else it carries), by VM key."""
        return {key: st for key, (st, _) in self._status_listing(subscription_id, before_page, on_headers).items()}

    def list_vms(self, subscription_id: str, subscription_name: str, before_page: Callable[[], object] | None = None,
                 on_headers: OnHeaders | None = None) -> list[Vm]:
        """Every VM: the full listing (the model) joined by id with the status listing (power
        state), fetched concurrently; 2 x pages requests. See `arm_json` for what each carries."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vmctl-status-list") as pool:
            status_future = pool.submit(self._status_listing, subscription_id, before_page, on_headers)
            models: list[ModelValues] = []
            try:
                for items in self._pages(subscription_id, self._vms_url(subscription_id),
                                         f"listing VMs in subscription {subscription_id}", before_page, on_headers):
                    models.extend(model_values(d) for d in items)  # page by page: raw pages are not kept
            except BaseException:
                status_future.cancel()
                raise
            status_map = status_future.result()
        return join_listings(models, status_map, subscription_name)

    def instance_view(self, subscription_id: str, resource_group: str, name: str,
                      on_headers: Callable[[dict[str, str]], None] | None = None, quick: bool = False) -> VmStatus:
        view = self._get(subscription_id,
                         f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/"
                         f"Microsoft.Compute/virtualMachines/{name}/instanceView?api-version={COMPUTE_API}",
                         f"reading the instance view of {resource_group}/{name}", on_headers, throttled=True,
                         quick=quick)
        return status_from_view(view)

    def resource_group_exists(self, subscription_id: str, resource_group: str) -> bool:
        try:
            self._get(subscription_id, f"/subscriptions/{subscription_id}/resourcegroups/{resource_group}"
                                       f"?api-version={RESOURCES_API}", f"resource group {resource_group}")
        except NotFoundError:
            return False
        return True

    def get_vm(self, subscription_id: str, resource_group: str, name: str,
               subscription_name: str = "") -> tuple[Vm, InstanceViewJson]:
        doc = self._get(
            subscription_id,
            f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Compute/"
            f"virtualMachines/{name}?api-version={COMPUTE_API}&$expand=instanceView",
            f"VM {resource_group}/{name}")
        view = instance_view_of(doc)
        return vm_from_json(doc, subscription_name, view), view

    # ------------------------------------------------------------------ actions
    def begin_action(self, vm: Vm, action: str, *, correlation_id: str, hibernate: bool = False,
                     skip_shutdown: bool = False, on_headers: Callable[[dict[str, str]], None] | None = None) -> Accepted:
        """Send one POST action and return at once (no SDK polling); retries are the executor's.

        `retry_total=0`: every retry is decided, counted and journaled by the executor.
        """
        ops = self.client(vm.subscription_id).virtual_machines
        client_request_id = str(uuid.uuid4())
        seen: dict[str, str] = {}

        def hook(response: Any) -> None:
            _http_line(response)
            seen.update({k.lower(): v for k, v in response.http_response.headers.items()})

        kwargs: dict[str, Any] = {
            "polling": False, "retry_total": 0, "raw_response_hook": hook,
            "headers": {"x-ms-correlation-request-id": correlation_id, "x-ms-client-request-id": client_request_id},
        }
        begin: Callable[[], Any] = {
            "powerOff": lambda: ops.begin_power_off(vm.resource_group, vm.name, skip_shutdown=skip_shutdown, **kwargs),
            "deallocate": lambda: ops.begin_deallocate(vm.resource_group, vm.name, hibernate=hibernate or None, **kwargs),
            "start": lambda: ops.begin_start(vm.resource_group, vm.name, **kwargs),
            "restart": lambda: ops.begin_restart(vm.resource_group, vm.name, **kwargs),
            "performMaintenance": lambda: ops.begin_perform_maintenance(vm.resource_group, vm.name, **kwargs),
            "redeploy": lambda: ops.begin_redeploy(vm.resource_group, vm.name, **kwargs),
        }[action]
        self._write(begin, seen, on_headers)
        url = seen.get("azure-asyncoperation") or seen.get("location")
        return Accepted(status_url=url, retry_after=_float(seen.get("retry-after")),
                        correlation_id=seen.get("x-ms-correlation-request-id", correlation_id),
                        client_request_id=client_request_id, headers=_ratelimit(seen))

    def _classify(self, exc: HttpResponseError, headers: dict[str, str]) -> Exception:
        status = exc.status_code or 0
        code = getattr(exc.error, "code", "") or ""
        message = getattr(exc.error, "message", "") or str(exc).splitlines()[0]
        retry_after = _float(headers.get("retry-after"))
        if status == 429:
            return ThrottledError(retry_after or 5.0, f"throttled ({code}): {message}")
        if status >= 500 or status == 408:
            return RetryableError(f"HTTP {status} ({code}): {message}", retry_after)
        if status == 401:
            return CredentialError(f"Azure refused the credential: ({code}) {message}", LOGIN_HINT)
        return ActionError(code, message, status)

    def operation_status(self, subscription_id: str, url: str,
                         on_headers: Callable[[dict[str, str]], None] | None = None) -> OperationStatus:
        resp = self._call(lambda: self.reader(subscription_id).send_request(HttpRequest("GET", url), **QUICK),
                          "polling an operation")
        headers = {k.lower(): v for k, v in resp.headers.items()}
        if on_headers:
            on_headers(headers)
        retry_after = _float(headers.get("retry-after"))
        if resp.status_code == 202:  # a Location URL: still running
            return OperationStatus("InProgress", retry_after=retry_after)
        if resp.status_code == 429:
            raise ThrottledError(retry_after or 5.0, "operation status poll throttled")
        if resp.status_code >= 400:
            # an error answer to a poll says nothing about the operation (only its status document
            # does): the caller retries, refreshes the credential after a 401, or asks the VM
            code, message = _error_parts(resp)
            if resp.status_code >= 500:
                raise RetryableError(f"HTTP {resp.status_code} polling the operation: ({code}) {message}", retry_after)
            raise self._http_error(resp.status_code, code, message, context="polling an operation")
        try:
            body = resp.json() if resp.text() else {}
        except ValueError:
            body = {}
        status = str(body.get("status") or "Succeeded")
        err = body.get("error") or {}
        return OperationStatus(status, str(err.get("code", "")), str(err.get("message", "")), retry_after,
                               _duration(body.get("startTime"), body.get("endTime")))

    def principal(self) -> dict[str, str]:
        """Who the token says we are (for the report). The token itself is never kept or written."""
        token = self._call(lambda: self.credential.get_token(self.connection.scope), "getting a token").token
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return {"name": "unknown"}
        name = claims.get("upn") or claims.get("unique_name") or claims.get("preferred_username") \
            or claims.get("appid") or claims.get("oid") or "unknown"
        return {"name": str(name), "objectId": str(claims.get("oid", "")), "tenantId": str(claims.get("tid", "")),
                "appId": str(claims.get("appid", ""))}

    # ------------------------------------------------------------------ Activity Log
    def monitor(self, subscription_id: str) -> Any:
        from azure.mgmt.monitor import MonitorManagementClient

        return self._cached(self._monitors, subscription_id, MonitorManagementClient)

    def activity_events(self, subscription_id: str, flt: str, select: str | None = None,
                        on_headers: Callable[[dict[str, str]], None] | None = None) -> list[Event]:
        """Every page of the Activity Log for a server-side $filter (the SDK's pager follows each
        nextLink: no silent truncation), each event compacted (`arm_json.event_from_json`)."""
        pager = self.monitor(subscription_id).activity_logs.list(filter=flt, select=select)
        out: list[Event] = []

        def pages() -> None:
            for page in pager.by_page():
                out.extend(event_from_json(e.serialize(keep_readonly=True)) for e in page)

        self._call(pages, "reading the Activity Log")
        return out

    # ------------------------------------------------------------------ Azure Resource Graph
    def graph_client(self) -> Any:
        """The ResourceGraphClient, created on first use. Imported here, not at the top: an ARM-only
        command (`vmctl list` on one subscription) must not pay for loading it."""
        from azure.mgmt.resourcegraph import ResourceGraphClient

        with self._lock:
            if self._graph is None:
                self._graph = ResourceGraphClient(
                    self.credential, base_url=self.connection.endpoint, credential_scopes=[self.connection.scope],
                    **self._pipeline_kwargs)
            return self._graph

    def graph_page(self, query: str, *, subscriptions: list[str] | None = None,
                   management_groups: list[str] | None = None, skip_token: str | None = None,
                   top: int = 1000) -> GraphPage:
        """One page through `ResourceGraphClient.resources` (its default retries: 5xx, and a 429
        only when it carries Retry-After); the quota headers come back with the rows."""
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        # a tenant or management-group scope above the tenant's subscription limit: the first
        # 10,000 subscriptions and x-ms-tenant-subscription-limit-hit (reported as coverage), not a
        # refusal; the SDK's default (false) leaves the answer to the service (wire §13.1)
        request = QueryRequest(query=query, subscriptions=subscriptions or None,
                               management_groups=management_groups or None,
                               options=QueryRequestOptions(top=top, skip_token=skip_token, result_format="objectArray",
                                                           allow_partial_scopes=not subscriptions))
        client = self.graph_client()

        def send() -> tuple[Any, dict[str, str]]:
            return client.resources(request, cls=lambda pr, d, _h: (d, {k.lower(): v for k, v in pr.http_response.headers.items()}))  # type: ignore[no-any-return]

        answer, headers = self._call(send, "querying Azure Resource Graph")
        rows = tuple(graph_row(d) for d in (answer.data or []) if isinstance(d, dict))
        remaining = headers.get("x-ms-user-quota-remaining", "")
        return GraphPage(rows=rows, total_records=int(answer.total_records or 0), skip_token=answer.skip_token or None,
                         truncated=str(answer.result_truncated).lower() == "true",
                         quota_remaining=int(remaining) if remaining.isdigit() else None,
                         quota_resets_after=_hms(headers.get("x-ms-user-quota-resets-after")),
                         tenant_limit_hit=headers.get("x-ms-tenant-subscription-limit-hit", "").lower() == "true")

    def _graph_error(self, exc: HttpResponseError) -> VmctlError | None:
        """Resource Graph's refusals that mean something to the caller; None: the generic mapping."""
        headers = {k.lower(): v for k, v in (getattr(exc.response, "headers", None) or {}).items()}
        status = exc.status_code or 0
        details = [(str(getattr(d, "code", "") or ""), str(getattr(d, "message", "") or ""))
                   for d in (getattr(exc.error, "details", None) or [])]
        if status == 429:
            wait = _float(headers.get("retry-after")) or _hms(headers.get("x-ms-user-quota-resets-after")) or 5.0
            return ThrottledError(wait, f"Azure Resource Graph throttled the query: {details[-1][1] if details else exc.message}")
        codes = {code for code, _ in details}
        if status == 403 or "NoValidSubscriptionsInQueryRequest" in codes:
            text = next((m for c, m in details if c == "NoValidSubscriptionsInQueryRequest"), "") or str(exc.message)
            return AccessDeniedError(f"Azure Resource Graph found no subscription this identity can read in the scope: {text}",
                                     "Check the subscriptions or management group (`az account list -o table`), or ask "
                                     "for Reader access.")
        if status == 400 and details:
            code, message = details[0]
            return AzureError(f"Azure Resource Graph refused the query: ({code}) {message}")
        return None
    # ------------------------------------------------------------------ ComputeSchedule (the batch engine)
    def scheduler(self, subscription_id: str) -> Any:
        """The official ComputeScheduleMgmtClient (imported on first use: only the batch engine needs it)."""
        from azure.mgmt.computeschedule import ComputeScheduleMgmtClient

        return self._cached(self._schedulers, subscription_id, ComputeScheduleMgmtClient)

    def _schedule_call(self, fn: Callable[[dict[str, Any]], Any],
                       on_headers: Callable[[dict[str, str]], None] | None, context: str) -> Any:
        """One ComputeSchedule POST, no SDK retries (the engine decides, counts and journals each);
        errors classified as for a VM action: 429 ThrottledError, 5xx/408 or a lost connection
        RetryableError (it may have landed), any other refusal ActionError."""
        seen: dict[str, str] = {}

        def hook(response: Any) -> None:
            _http_line(response)
            seen.update({k.lower(): v for k, v in response.http_response.headers.items()})

        return self._write(lambda: fn({"retry_total": 0, "raw_response_hook": hook}), seen, on_headers, context)

    def _write(self, send: Callable[[], T], seen: dict[str, str], on_headers: Callable[[dict[str, str]], None] | None,
               context: str = "") -> T:
        """One write (a VM action or a ComputeSchedule POST): the answer's headers (collected in `seen` by
        the request's hook) reported either way; a refusal classified (429 ThrottledError, 5xx/408
        RetryableError, else ActionError); a connection lost after sending is RetryableError: it may
        have landed."""
        try:
            result = send()
        except HttpResponseError as exc:
            headers = getattr(exc.response, "headers", None) or {}
            seen.update({k.lower(): v for k, v in headers.items()})
            if on_headers:
                on_headers(seen)
            raise self._classify(exc, seen) from exc
        except ServiceResponseError as exc:
            where = f" while {context}" if context else ""
            raise RetryableError(f"connection lost{where}: {str(exc).splitlines()[0]}") from exc
        except ServiceRequestError as exc:
            raise self._endpoint_error(exc) from exc
        except ClientAuthenticationError as exc:
            raise CredentialError(_credential_failure(str(exc)), LOGIN_HINT) from exc
        if on_headers:
            on_headers(seen)
        return result

    @staticmethod
    def _batch_results(items: Any) -> list[BatchResult]:
        out = []
        for r in items or []:
            op = r.operation
            err = op.resource_operation_error if op is not None else None
            state = op.state if op is not None else None
            out.append(BatchResult(
                resource_id=str(r.resource_id or (op.resource_id if op is not None else "") or ""),
                operation_id=str(op.operation_id) if op is not None and op.operation_id else None,
                state=str(getattr(state, "value", state) or ""), error_code=str(r.error_code or ""),
                error_details=str(r.error_details or ""),
                op_error_code=str(err.error_code or "") if err is not None else "",
                op_error_details=str(err.error_details or "") if err is not None else "",
                completed_at=op.completed_at.isoformat() if op is not None and op.completed_at else None))
        return out

    def batch_execute(self, subscription_id: str, location: str, op_type: BatchOpType, ids: list[str], *,
                      correlation_id: str, retry: RetryPolicy | None,
                      on_headers: Callable[[dict[str, str]], None] | None = None) -> list[BatchResult]:
        from azure.mgmt.computeschedule import models as m

        params = m.ExecutionParameters(retry_policy=m.RetryPolicy(
            retry_count=retry.count, retry_window_in_minutes=retry.window_minutes) if retry is not None else None)
        ops = self.scheduler(subscription_id).scheduled_actions
        request: Any = {"Deallocate": m.ExecuteDeallocateRequest, "Start": m.ExecuteStartRequest,
                        "Hibernate": m.ExecuteHibernateRequest}[op_type](
            execution_parameters=params, resources=m.Resources(ids=list(ids)), correlationid=correlation_id)
        send = {"Deallocate": ops.virtual_machines_execute_deallocate, "Start": ops.virtual_machines_execute_start,
                "Hibernate": ops.virtual_machines_execute_hibernate}[op_type]
        resp = self._schedule_call(lambda kw: send(location, request, **kw), on_headers,
                                   f"sending {op_type} for {len(ids)} VMs")
        return self._batch_results(resp.results)

    def _batch_by_ids(self, subscription_id: str, location: str, operation_ids: list[str], correlation_id: str,
                      on_headers: Callable[[dict[str, str]], None] | None, cancel: bool) -> list[BatchResult]:
        """GetOperationStatus or CancelOperations: the same body, the same answer."""
        from azure.mgmt.computeschedule import models as m

        ops = self.scheduler(subscription_id).scheduled_actions
        model, send, context = ((m.CancelOperationsRequest, ops.virtual_machines_cancel_operations, "cancelling operations")
                                if cancel else (m.GetOperationStatusRequest, ops.virtual_machines_get_operation_status,
                                                "asking for operation status"))
        body = model(operation_ids=list(operation_ids), correlationid=correlation_id)
        resp = self._schedule_call(lambda kw: send(location, body, **kw), on_headers, context)
        return self._batch_results(resp.results)

    def batch_status(self, subscription_id: str, location: str, operation_ids: list[str], *, correlation_id: str,
                     on_headers: Callable[[dict[str, str]], None] | None = None) -> list[BatchResult]:
        return self._batch_by_ids(subscription_id, location, operation_ids, correlation_id, on_headers, cancel=False)

    def batch_cancel(self, subscription_id: str, location: str, operation_ids: list[str], *, correlation_id: str,
                     on_headers: Callable[[dict[str, str]], None] | None = None) -> list[BatchResult]:
        return self._batch_by_ids(subscription_id, location, operation_ids, correlation_id, on_headers, cancel=True)

    def batch_errors(self, subscription_id: str, location: str, operation_ids: list[str],
                     on_headers: Callable[[dict[str, str]], None] | None = None) -> list[BatchErrors]:
        from azure.mgmt.computeschedule import models as m

        ops = self.scheduler(subscription_id).scheduled_actions
        body = m.GetOperationErrorsRequest(operation_ids=list(operation_ids))
        resp = self._schedule_call(lambda kw: ops.virtual_machines_get_operation_errors(location, body, **kw),
                                   on_headers, "reading operation errors")
        out = []
        for r in resp.results or []:
            attempts = tuple(
                BatchAttemptError(code=str(e.error_code or ""), details=str(e.error_details or ""),
                                  timestamp=(e.timestamp or e.time_stamp).isoformat() if (e.timestamp or e.time_stamp)
                                  else None,
                                  operation_name=str(e.azure_operation_name or ""),
                                  crp_operation_id=str(e.crp_operation_id or ""))
                for e in r.operation_errors or [])
            out.append(BatchErrors(str(r.operation_id or ""), attempts, str(r.request_error_code or ""),
                                   str(r.request_error_details or "")))
        return out

    # ------------------------------------------------------------------ errors
    def _call(self, fn: Callable[[], T], context: str) -> T:
        try:
            return fn()
        except VmctlError:
            raise
        except CredentialUnavailableError as exc:
            raise CredentialError(f"No Azure credential is available (tried {TRIED}).", LOGIN_HINT) from exc
        except ClientAuthenticationError as exc:
            raise CredentialError(_credential_failure(str(exc)), LOGIN_HINT) from exc
        except ServiceRequestError as exc:
            raise self._endpoint_error(exc) from exc
        except ServiceResponseError as exc:
            raise EndpointError(f"{self.connection.endpoint} closed the connection while {context}: {exc}.",
                                "Retry; if it persists, check the endpoint and your network.") from exc
        except HttpResponseError as exc:
            if context == "querying Azure Resource Graph":
                graph = self._graph_error(exc)
                if graph is not None:
                    raise graph from exc
            raise self._http_error(exc.status_code or 0, getattr(exc.error, "code", "") or "",
                                   getattr(exc.error, "message", "") or str(exc), context=context) from exc

    def _endpoint_error(self, exc: Exception) -> EndpointError:
        text = str(exc)
        ep = self.connection.endpoint
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return EndpointError(f"The TLS certificate of {ep} is not trusted.",
                                 "Point REQUESTS_CA_BUNDLE at its CA (for the simulator: load its --env-file).")
        return EndpointError(f"Cannot reach {ep}: {text.splitlines()[0] if text else type(exc).__name__}.",
                             "Check --arm-endpoint / VMCTL_ARM_ENDPOINT / --cloud and your network.")

    def _http_error(self, status: int, code: str, message: str, context: str) -> VmctlError:
        label = f"({code}) " if code else ""
        if status == 401:
            if code == "ExpiredAuthenticationToken":
                return CredentialError(f"Azure refused an expired token while {context}: {message}",
                                       "Sign in again (`az login`) or check the machine's clock.")
            return CredentialError(f"Azure refused the credential while {context}: {label}{message}", LOGIN_HINT)
        if status == 403:
            return AccessDeniedError(f"Access denied while {context}: {label}{message}",
                                     "Ask for a role that allows it (Reader to list, Virtual Machine Contributor to act).")
        return AzureError(f"Azure answered HTTP {status} while {context}: {label}{message}")
