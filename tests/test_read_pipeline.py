"""vmctl's reads go through an ARMPipelineClient built like ComputeManagementClient's own pipeline
(cloud/azure.py `read_pipeline`), so `vmctl list` never imports azure.mgmt.compute. These tests pin
that the two pipelines hold the same policies in the same order, configured alike, and that
importing the read side leaves azure.mgmt.compute unimported."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from azure.core.pipeline.policies import RetryPolicy

from conftest import SUB_A, SimHandle
from vmctl.cloud import Connection
from vmctl.cloud.azure import BLOCK, AzureFleet, transport_settings


def _policies(client: Any) -> list[Any]:
    """The policies of a pipeline client, SansIO policies unwrapped from their runners."""
    return [getattr(p, "_policy", p) for p in client._pipeline._impl_policies]


def test_read_pipeline_has_the_policies_of_compute_management_client(sim: SimHandle) -> None:
    fleet = AzureFleet(Connection(arm_endpoint=sim.url))
    ours = _policies(fleet.reader(SUB_A))
    theirs = _policies(fleet.client(SUB_A)._client)
    assert [type(p) for p in ours] == [type(p) for p in theirs]
    retry = next(p for p in ours if isinstance(p, RetryPolicy))
    assert retry.total_retries == next(p for p in theirs if isinstance(p, RetryPolicy)).total_retries
    assert fleet.reader(SUB_A)._pipeline._transport.connection_config.data_block_size == BLOCK
    assert fleet.reader(SUB_A) is fleet.reader(SUB_A)  # one per subscription: one connection pool


def test_the_read_side_does_not_import_azure_mgmt_compute() -> None:
    code = ("import sys, vmctl.cloud.azure, vmctl.inventory, vmctl.cli.inventory;"
            "print(sorted(m for m in sys.modules if m.startswith('azure.mgmt.compute')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reads_and_a_listing_through_the_read_pipeline(sim: SimHandle) -> None:
    fleet = AzureFleet(Connection(arm_endpoint=sim.url))
    vms = fleet.list_vms(SUB_A, fleet.subscription_name(SUB_A))
    assert vms and all(vm.power_state != "unknown" for vm in vms)
    assert "azure.mgmt.compute" not in sys.modules or fleet._clients == {}  # no compute client was made


def test_environment_read_once_unless_a_proxy_is_set() -> None:
    """requests re-reads the environment (proxies, ~/.netrc, the CA bundle) on every request unless
    told not to; vmctl reads it once. With a proxy configured, requests keeps doing it (NO_PROXY)."""
    assert transport_settings({}) == {"use_env_settings": False}
    assert transport_settings({"REQUESTS_CA_BUNDLE": "/ca.pem", "CURL_CA_BUNDLE": "/other.pem"}) == \
        {"use_env_settings": False, "connection_verify": "/ca.pem"}
    assert transport_settings({"CURL_CA_BUNDLE": "/other.pem"}) == {"use_env_settings": False,
                                                                   "connection_verify": "/other.pem"}
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "no_proxy"):
        assert transport_settings({proxy: "http://proxy:3128", "REQUESTS_CA_BUNDLE": "/ca.pem"}) == {}


def test_every_client_reads_the_environment_once(sim: SimHandle) -> None:
    """The read pipeline and the SDK clients all get the settings: no session trusts the environment,
    and the simulator's CA (REQUESTS_CA_BUNDLE) is still what verifies the connection."""
    fleet = AzureFleet(Connection(arm_endpoint=sim.url))
    for client in (fleet.reader(SUB_A), fleet.client(SUB_A)._client):
        transport = client._pipeline._transport
        transport.open()
        assert transport.session.trust_env is False
    assert fleet.subscription_name(SUB_A)  # a real request, verified against the simulator's CA
