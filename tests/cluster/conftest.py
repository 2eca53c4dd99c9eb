"""A local Ray cluster of two virtual nodes on this machine (ray.cluster_utils.Cluster), lean for CI:
one CPU each, no dashboard. Node "a" holds the custom resource node_a, node "b" node_b; node b's
simulated monitors run their clock PLANTED_SKEW_NS ahead (monitor.node's test-only variable)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from monitor.node import SIM_CLOCK_SKEW_ENV

# Every virtual node, driver and the servers they place on loopback (Ray's single-host mode): test traffic
# stays on 127.0.0.1, never on the host's own network address. Set before Ray starts, inherited by the
# launcher and runner processes the tests start.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

PLANTED_SKEW_NS = 1_750_000_000  # node b's clock 1.75 s ahead of the runner's


@dataclass
class VirtualCluster:
    address: str  # the GCS address, as `--cluster` takes it
    nodes: dict[str, str]  # "a"/"b" -> Ray node id


@pytest.fixture(scope="module")  # not idling beside the rest of the suite (2 cores, timing tests)
def ray_cluster() -> Iterator[VirtualCluster]:
    import ray
    from ray.cluster_utils import Cluster

    node_args = {"num_cpus": 1, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "resources": {"node_a": 1}})
    try:
        cluster.add_node(
            **node_args, resources={"node_b": 1}, env_vars={SIM_CLOCK_SKEW_ENV: str(PLANTED_SKEW_NS)}
        )
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        nodes = {}
        for n in ray.nodes():
            for name in ("a", "b"):
                if f"node_{name}" in n["Resources"]:
                    nodes[name] = n["NodeID"]
        ray.shutdown()
        yield VirtualCluster(cluster.address, nodes)
    finally:
        ray.shutdown()
        cluster.shutdown()
