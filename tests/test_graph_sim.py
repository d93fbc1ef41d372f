"""The simulator's Azure Resource Graph endpoint through the real azure-mgmt-resourcegraph client
(wire contract §13): the fleet query's rows and paging, the refusals, scope, quota and staleness."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from conftest import SimHandle, poll_until
from vmctl.simulator.graph import COLUMNS, FLEET_QUERY
from vmctl.sources import QUERY

Make = Callable[..., SimHandle]
SUBS = [f"00000000-0000-0000-0000-0000000001{i:02d}" for i in range(4)]


def graph_fleet(counts: list[int], *, readable: list[bool] | None = None, **resource_graph: Any) -> dict[str, Any]:
    subs = []
    for i, n in enumerate(counts):
        vms = [{"name": f"vm{i}-{{i:04d}}", "count": n, "tags": {"env": "dev"}}] if n else []
        subs.append({"id": SUBS[i], "name": f"graph-{i}", "readable": (readable or [True] * 4)[i],
                     "resource_groups": [{"name": f"RG-Graph{i}", "location": "WestEurope", "vms": vms}]})
    fleet: dict[str, Any] = {"tenant_id": "11111111-0000-0000-0000-000000000000", "subscriptions": subs,
                             "time": {"lro_seconds": {"deallocate": 0.2, "start": 0.2}, "jitter": 0},
                             "management_groups": [{"name": "mg-root", "subscriptions": SUBS[:1], "children": ["mg-leaf"]},
                                                   {"name": "mg-leaf", "subscriptions": SUBS[1:len(counts)]}]}
    if resource_graph:
        fleet["platform"] = {"resource_graph": resource_graph}
    return fleet


def client(sim: SimHandle) -> ResourceGraphClient:
    from azure.identity import DefaultAzureCredential

    return ResourceGraphClient(DefaultAzureCredential(), base_url=sim.url)


def query(c: ResourceGraphClient, *, text: str = QUERY, top: int | None = 1000, token: str | None = None,
          partial: bool = False, **scope: Any) -> tuple[Any, dict[str, str]]:
    options = (QueryRequestOptions(top=top, skip_token=token, allow_partial_scopes=partial)
               if top is not None or token or partial else None)
    return c.resources(QueryRequest(query=text, options=options, **scope),  # type: ignore[no-any-return]
                       cls=lambda pr, d, _h: (d, {k.lower(): v for k, v in pr.http_response.headers.items()}))


def details(exc: HttpResponseError) -> list[str]:
    return [d.code for d in exc.error.details]  # type: ignore[union-attr]


def test_vmctl_sends_the_wire_contract_query() -> None:
    assert " ".join(QUERY.split()) == " ".join(FLEET_QUERY.split())


def test_pages_of_1000_with_skip_token_and_exactly_14_columns(make_sim: Make) -> None:
    sim = make_sim(graph_fleet([1200, 1300]))
    c = client(sim)
    rows: list[dict[str, Any]] = []
    token, counts = None, []
    while True:
        page, headers = query(c, subscriptions=SUBS[:2], token=token)
        rows += page.data
        counts.append(page.count)
        assert page.total_records == 2500 and page.result_truncated == "false" and page.facets == []
        token = page.skip_token
        if not token:
            break
    assert counts == [1000, 1000, 500]
    assert len({r["id"] for r in rows}) == 2500 and [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    first = rows[0]
    assert tuple(first) == COLUMNS
    assert first["resourceGroup"] == "rg-graph0" and first["location"] == "westeurope"  # lower-case, as ARG
    assert first["id"].split("/")[4] == "RG-Graph0" and first["powerState"] == "PowerState/running"
    assert first["tags"] == {"env": "dev"} and first["zone"] == "" and first["priority"] == ""
    assert headers["x-ms-user-quota-resets-after"] == "00:00:05"


def test_top_defaults_to_100_and_stops_at_1000(make_sim: Make) -> None:
    sim = make_sim(graph_fleet([150]))
    c = client(sim)
    page, _ = query(c, top=None, subscriptions=SUBS[:1])
    assert page.count == 100 and page.skip_token
    with pytest.raises(HttpResponseError) as exc:
        query(c, top=1001, subscriptions=SUBS[:1])
    assert exc.value.status_code == 400


def test_any_other_query_is_refused_with_resource_graphs_400(make_sim: Make) -> None:
    sim = make_sim(graph_fleet([3]))
    with pytest.raises(HttpResponseError) as exc:
        query(client(sim), text="Resources | project id, name | limit 3", subscriptions=SUBS[:1])
    assert exc.value.status_code == 400 and exc.value.error.code == "BadRequest"  # type: ignore[union-attr]
    assert details(exc.value)[0] == "InvalidQuery"
    assert "Please provide below info when asking for support" in str(exc.value)


def test_unreadable_subscriptions_are_dropped_and_none_readable_is_400(make_sim: Make) -> None:
    sim = make_sim(graph_fleet([2, 3], readable=[True, False, True, True]))
    c = client(sim)
    page, _ = query(c, subscriptions=SUBS[:2])
    assert page.total_records == 2 and {r["subscriptionId"] for r in page.data} == {SUBS[0]}  # 200, no word
    with pytest.raises(HttpResponseError) as exc:
        query(c, subscriptions=[SUBS[1]])
    assert exc.value.status_code == 400 and details(exc.value) == ["NoValidSubscriptionsInQueryRequest"]
    tenant, _ = query(c)  # no scope: every readable subscription
    assert tenant.total_records == 2


@pytest.mark.assumption("what Resource Graph answers above the subscription limit without allowPartialScopes "
                        "is not established; the default refuses")
def test_management_groups_and_the_tenant_subscription_limit(make_sim: Make) -> None:
    sim = make_sim(graph_fleet([2, 3, 4], tenant_subscription_limit=2))
    c = client(sim)
    with pytest.raises(HttpResponseError) as refused:  # mg-root holds sub 0 and, through mg-leaf, 1 and 2
        query(c, management_groups=["mg-root"])  # the SDK's default: allowPartialScopes false
    assert refused.value.status_code == 400 and details(refused.value) == ["TenantSubscriptionLimitExceeded"]
    page, headers = query(c, management_groups=["mg-root"], partial=True)
    assert headers.get("x-ms-tenant-subscription-limit-hit") == "true" and page.total_records == 5
    leaf, headers = query(c, management_groups=["mg-leaf"])
    assert "x-ms-tenant-subscription-limit-hit" not in headers and leaf.total_records == 7
    with pytest.raises(HttpResponseError) as exc:
        query(c, management_groups=["mg-nowhere"])
    assert details(exc.value) == ["NoValidSubscriptionsInQueryRequest"]


@pytest.mark.assumption("whether Resource Graph's 429 carries Retry-After is not established; the default sends none")
def test_quota_headers_count_down_and_a_429_follows(make_sim: Make) -> None:
    sim = make_sim(graph_fleet([1], quota={"queries": 3, "window_seconds": 600}))
    c = client(sim)
    left = [int(query(c, subscriptions=SUBS[:1])[1]["x-ms-user-quota-remaining"]) for _ in range(3)]
    assert left == [2, 1, 0]
    with pytest.raises(HttpResponseError) as exc:
        query(c, subscriptions=SUBS[:1])
    assert exc.value.status_code == 429 and exc.value.error.code == "RateLimiting"  # type: ignore[union-attr]
    assert "retry-after" not in {k.lower() for k in exc.value.response.headers}  # so the SDK did not retry
    assert exc.value.response.headers["x-ms-user-quota-remaining"] == "0"
    assert sim.stats()["by_status"]["429"] == 1


def test_power_changes_show_a_minute_late(make_sim: Make) -> None:
    """ARG is a snapshot up to 60 s old (the default, stricter end); with lag 0 it is current."""
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient

    for lag, expected in ((60, "PowerState/running"), (0, "PowerState/deallocated")):
        sim = make_sim(graph_fleet([1], lag_seconds=lag))
        compute = ComputeManagementClient(DefaultAzureCredential(), SUBS[0], base_url=sim.url, polling_interval=0.05)
        compute.virtual_machines.begin_deallocate("RG-Graph0", "vm0-0001").result()
        assert compute.virtual_machines.instance_view("RG-Graph0", "vm0-0001").statuses[1].code == "PowerState/deallocated"
        assert query(client(sim), subscriptions=SUBS[:1])[0].data[0]["powerState"] == expected


def test_an_api_version_resource_graph_does_not_serve_is_refused_as_arm_does(make_sim: Make) -> None:
    from azure.identity import DefaultAzureCredential

    sim = make_sim(graph_fleet([1]))
    old = ResourceGraphClient(DefaultAzureCredential(), base_url=sim.url, api_version="2019-04-01")
    with pytest.raises(HttpResponseError) as exc:
        query(old, subscriptions=SUBS[:1])
    assert exc.value.status_code == 400 and exc.value.error.code == "NoRegisteredProviderFound"  # type: ignore[union-attr]
    assert "x-ms-user-quota-remaining" not in exc.value.response.headers  # refused before Resource Graph counted it
    assert query(client(sim), subscriptions=SUBS[:1])[1]["x-ms-user-quota-remaining"] == "14"


def test_an_eviction_shows_as_late_as_an_operation(make_sim: Make) -> None:
    """A Spot eviction changes power without an operation; Resource Graph shows it a minute late
    too, also on a VM whose operations it replays (which used to hide the eviction for good)."""
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient

    sim = make_sim(graph_fleet([2], lag_seconds=60), time_scale=20)  # the lag: 3 s
    compute = ComputeManagementClient(DefaultAzureCredential(), SUBS[0], base_url=sim.url, polling_interval=0.05)
    compute.virtual_machines.begin_deallocate("RG-Graph0", "vm0-0002").result()
    compute.virtual_machines.begin_start("RG-Graph0", "vm0-0002").result()
    backend = sim.sim.backend
    with backend.lock:
        for name in ("vm0-0001", "vm0-0002"):
            backend.evict(backend.find_vm(name), backend.now())

    def shown() -> dict[str, str]:
        return {r["name"]: r["powerState"] for r in query(client(sim), subscriptions=SUBS[:1])[0].data}

    assert shown() == {"vm0-0001": "PowerState/running", "vm0-0002": "PowerState/running"}
    poll_until(lambda: set(shown().values()) == {"PowerState/deallocated"}, timeout=20)
