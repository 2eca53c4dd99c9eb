"""Per-node simulated monitors on a two-node local Ray cluster: each node's GPUs sampled where they are,
node b's planted clock offset recovered within its round-trip bound, and every time on the runner's
clock."""

from __future__ import annotations

import time
from pathlib import Path

from experiments.cluster_energy import ClusterEnergyMeter, node_gpus
from experiments.schema import Instance, ServingSetup
from tests.cluster.conftest import PLANTED_SKEW_NS, VirtualCluster

ALIGN_NS = 150_000_000  # a window edge waits up to one counter update (~100 ms) for the counter to step


def _setup(cluster: VirtualCluster) -> ServingSetup:
    """What the launcher records for 1P2D on CPU: the prefill on node a, both decodes on node b."""
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    return ServingSetup(
        kind="xpyd",
        cluster=cluster.address,
        instances=[
            Instance(name="prefill0", role="prefill", node=a, node_address="10.0.0.1"),
            Instance(name="decode0", role="decode", node=b, node_address="10.0.0.2"),
            Instance(name="decode1", role="decode", node=b, node_address="10.0.0.2"),
        ],
    )


def test_gpus_are_numbered_in_the_setups_order_whatever_ids_ray_draws() -> None:
    """Two nodes on one address (a loopback cluster) whose ids sort against the setup: the prefill's node
    still holds GPU 0, so a run's GPU numbering does not change with the ids Ray draws."""
    setup = ServingSetup(
        kind="xpyd",
        instances=[
            Instance(name="prefill0", role="prefill", node="ff", node_address="127.0.0.1"),
            Instance(name="decode0", role="decode", node="00", node_address="127.0.0.1", gpu="3,1"),
        ],
    )
    nodes = node_gpus(setup, "sim")
    assert [(n.node_id, n.gpus) for n in nodes] == [
        ("ff", [(0, "prefill", 0)]),
        ("00", [(1, "decode", 1), (3, "decode", 2)]),
    ]


def test_each_node_is_monitored_on_the_runners_clock(ray_cluster: VirtualCluster, tmp_path: Path) -> None:
    meter = ClusterEnergyMeter(_setup(ray_cluster), 0.02, "sim", tmp_path / "power.csv")
    assert meter.reason is None
    meter.start()
    assert meter.reason is None
    try:
        meter.measure_idle(0.3)
        before = time.time_ns()
        meter.begin()
        time.sleep(0.5)
        meter.end()
        after = time.time_ns()
    finally:
        meter.stop()
    sec = meter.section()
    assert sec.available, sec.reason
    a, b = ray_cluster.nodes["a"], ray_cluster.nodes["b"]
    clocks = {n.node: n for n in sec.nodes}
    assert set(clocks) == {a, b}
    # The planted offset (node b 1.75 s ahead, node a none) recovered within each measured bound.
    assert abs(clocks[b].clock_offset_ns - PLANTED_SKEW_NS) <= clocks[b].offset_bound_ns
    assert abs(clocks[a].clock_offset_ns) <= clocks[a].offset_bound_ns
    assert clocks[a].gpus == [0] and clocks[b].gpus == [1, 2]
    # GPUs numbered across nodes, each named with its node, its NVML index there and its role.
    assert [(g.index, g.node, g.node_index, g.role) for g in sec.gpus] == [
        (0, a, 0, "prefill"),
        (1, b, 0, "decode"),
        (2, b, 1, "decode"),
    ]
    # Every window edge on the runner's clock: within the begin/end calls (plus counter alignment and
    # the offset's bound); uncorrected, node b's would be 1.75 s late.
    for g in sec.gpus:
        slack = clocks[g.node].offset_bound_ns + ALIGN_NS
        assert g.start_epoch_ns is not None and g.end_epoch_ns is not None
        assert before - slack <= g.start_epoch_ns <= after + slack
        assert before - slack <= g.end_epoch_ns <= after + slack
        assert g.energy_j is not None and g.energy_j > 0 and g.idle_power_w is not None
        assert g.duration_s > 0.3
    assert (
        sec.window is not None and before - ALIGN_NS - clocks[b].offset_bound_ns <= sec.window.start_epoch_ns
    )
    # The timeline of all three GPUs on one axis, inside the monitored time on the runner's clock.
    assert sec.timeline is not None and set(sec.timeline.power_w) == {"0", "1", "2"}
    assert sec.timeline.epoch_ns[-1] <= after + clocks[b].offset_bound_ns + ALIGN_NS
    assert sec.monitor is not None and sec.monitor.gpu_ids == [0, 1, 2]
    # Each node wrote its own power CSV (here, on one machine, beside the result).
    for n in sec.nodes:
        assert n.power_csv is not None and Path(n.power_csv).stat().st_size > 0


def test_a_cpu_run_without_the_simulated_backend_says_why_there_is_no_energy(
    ray_cluster: VirtualCluster, tmp_path: Path
) -> None:
    meter = ClusterEnergyMeter(_setup(ray_cluster), 0.1, "auto", tmp_path / "power.csv")
    meter.start()
    assert (
        meter.section().reason
        == "no GPUs on the cluster's instances (a CPU run; --monitor sim simulates them)"
    )
