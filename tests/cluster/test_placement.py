"""InstanceHost/RayServer on the two-node local Ray cluster with a stand-in process (no vLLM): placed on
the node its role's resource names, its process on that node, and nothing left once the actor is stopped
or killed outright (the parent-death guard)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from experiments.ray_cluster import ClusterError, connect
from launch.ray_placement import PlaceOptions, place
from launch.server import ServerSpec
from tests.cluster.conftest import VirtualCluster
from tests.conftest import free_port

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.fixture
def driver(ray_cluster: VirtualCluster) -> Iterator[VirtualCluster]:
    ray = connect(ray_cluster.address)
    try:
        yield ray_cluster
    finally:
        ray.shutdown()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pid: int, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _spec(name: str) -> ServerSpec:
    return ServerSpec(model="-", port=free_port(), name=name, command_override=list(SLEEPER))


def test_roles_land_on_their_nodes_and_stop_or_kill_leaves_nothing(
    driver: VirtualCluster, tmp_path: Path
) -> None:
    import ray

    options = PlaceOptions(cpus_per_instance=0.5, role_resources={"prefill": "node_b", "decode": "node_a"})
    p, d = place([("prefill", _spec("prefill0")), ("decode", _spec("decode0"))], tmp_path, options)
    assert (p.placement.node_id, d.placement.node_id) == (driver.nodes["b"], driver.nodes["a"])
    assert p.spec.host == p.placement.address and p.spec.env["VLLM_HOST_IP"] == p.placement.address
    for server in (p, d):
        server.start()
        assert server.alive() and server.pid is not None
        assert psutil.Process(server.pid).ppid() == server.placement.actor_pid  # the guard exec'd
    assert not (tmp_path / "prefill0.pid").exists()  # pid files stay on the node, off the run dir
    p.stop(grace_s=5)
    assert _gone(p.pid) and _gone(p.placement.actor_pid)
    # Killed without a stop (as when the driver dies): the process follows its actor.
    ray.kill(d.actor)
    assert _gone(d.placement.actor_pid) and _gone(d.pid)
    assert not d.alive()


def test_a_request_no_node_can_meet_is_an_error_naming_the_nodes(
    driver: VirtualCluster, tmp_path: Path
) -> None:
    options = PlaceOptions(role_resources={"decode": "node_z"}, place_timeout_s=2)
    with pytest.raises(ClusterError, match=r"no node took decode0 within 2 s: .* 'node_z'") as exc:
        place([("decode", _spec("decode0"))], tmp_path, options)
    assert "CPU=1, node_a=1" in str(exc.value) and "CPU=1, node_b=1" in str(exc.value)
