"""Instance selection mirrors the proxy's; setup names; workload lengths equal the runner's."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from experiments.arrivals import ArrivalConfig, schedule
from experiments.model_dir import load_tokenizer
from experiments.workloads import WorkloadError, random_workload
from planner.selection import Selector
from planner.setups import Setup, candidate_setups, parse_setup
from planner.workload import WorkloadSpec, build_workload, fixed_lengths
from proxy.config import InstanceSpec
from proxy.instances import InstancePool


@pytest.mark.parametrize("policy", ["round_robin", "least_outstanding"])
def test_selector_picks_what_the_proxy_picks(policy: str) -> None:
    urls = [f"http://10.0.0.{i}:8000" for i in range(5)]
    pool = InstancePool("decode", policy, [InstanceSpec(u) for u in urls])
    sel = Selector(len(urls), policy)
    rng = np.random.default_rng(0)
    held: list[tuple[object, int]] = []
    for _ in range(2000):
        if held and rng.random() < 0.45:
            inst, idx = held.pop(int(rng.integers(len(held))))
            pool.release(inst)  # type: ignore[arg-type]
            sel.release(idx)
            continue
        inst = pool.acquire()
        idx = sel.acquire()
        assert urls.index(inst.url) == idx
        held.append((inst, idx))
    assert sel.outstanding == [i.outstanding for i in pool.instances()]


def test_setup_names_round_trip_and_count_gpus() -> None:
    assert parse_setup("single") == Setup(0, 1)
    assert parse_setup("replicas:4").gpus == 4 and parse_setup("replicas:4").name == "replicas:4"
    s = parse_setup("2p6d", "least_outstanding")
    assert (s.n_prefill, s.n_decode, s.gpus, s.name, s.policy) == (2, 6, 8, "2P6D", "least_outstanding")
    with pytest.raises(ValueError, match="xPyD"):
        parse_setup("1P")
    with pytest.raises(ValueError, match="selection policy"):
        Setup(1, 1, "random")


def test_candidates_use_exactly_the_gpus() -> None:
    cands = candidate_setups(4)
    assert [c.name for c in cands] == ["replicas:4", "1P3D", "2P2D", "3P1D"]
    assert all(c.gpus == 4 for c in cands)
    assert [c.name for c in candidate_setups(1)] == ["single"]


def test_lengths_equal_the_runners_with_a_real_tokenizer(tiny_model: str) -> None:
    spec = WorkloadSpec(kind="random", num_requests=30, input_len=(20, 200), output_len=(5, 50), seed=5)
    ours = build_workload(spec)
    real = random_workload(load_tokenizer(tiny_model), 30, (20, 200), (5, 50), 5)
    assert ours.prompt_tokens.tolist() == [r.input_tokens for r in real]
    assert ours.output_tokens.tolist() == [r.output_tokens for r in real]


def test_arrivals_are_the_runners_schedule() -> None:
    wl = build_workload(WorkloadSpec(num_requests=500, input_len=100, output_len=10, seed=1))
    ours = wl.arrivals("gamma", 7.0, burstiness=0.5, seed=3)
    theirs = schedule(list(wl.specs), ArrivalConfig("gamma", rate=7.0, burstiness=0.5, seed=3))
    assert ours.tolist() == theirs
    with pytest.raises(ValueError, match="closed-loop"):
        wl.arrivals("closed", None)


def test_trace_workload_replays_lengths_and_times(tmp_path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("timestamp_s,input_length,output_length\n10.0,300,20\n10.5,1200,7\n12.0,50,90\n")
    wl = build_workload(WorkloadSpec(kind="trace", num_requests=10, dataset=str(path)))
    assert wl.prompt_tokens.tolist() == [300, 1200, 50] and wl.output_tokens.tolist() == [20, 7, 90]
    assert wl.arrivals("trace", None).tolist() == [0.0, 0.5, 2.0]


def test_prompt_text_and_bad_lengths_are_refused() -> None:
    with pytest.raises(WorkloadError, match="ShareGPT workload needs"):
        build_workload(WorkloadSpec(kind="sharegpt", dataset="x.json"))
    with pytest.raises(WorkloadError, match=">= 1"):
        fixed_lengths([10, 0], [5, 5])


def test_a_trace_is_rescaled_to_a_mean_rate_and_keeps_its_prompt_blocks(tmp_path) -> None:
    rows = [(0, 600, 5, [1]), (1, 1100, 5, [1, 2]), (3, 1200, 5, [1, 2, 3])]  # 2 gaps in 3 s: 2/3 req/s
    path = tmp_path / "m.jsonl"
    path.write_text(
        "".join(
            f'{{"timestamp": {t * 1000}, "input_length": {i}, "output_length": {o}, "hash_ids": {h}}}\n'
            for t, i, o, h in rows
        )
    )
    wl = build_workload(WorkloadSpec(kind="trace", num_requests=10, dataset=str(path)))
    assert wl.arrivals("trace", None).tolist() == [0.0, 1.0, 3.0]
    assert wl.arrivals("trace", 2.0).tolist() == pytest.approx([0.0, 1 / 3, 1.0])  # 3x the own mean rate
    assert wl.prefix is not None and wl.prefix.block_tokens == 512
    assert wl.prefix.chains == ((0,), (0, 1), (0, 1))  # whole 512-token blocks only
    capped = build_workload(WorkloadSpec(kind="trace", num_requests=2, dataset=str(path), trace_rate=4.0))
    assert capped.arrivals("trace", None).tolist() == [0.0, 0.25] and capped.trace.offered_rate == 4.0  # type: ignore[union-attr]
    twice = wl.repeated(2)
    assert twice.prefix is not None and twice.prefix.chains[3:] == ((2,), (2, 3), (2, 3))  # new prompts


def test_planner_simulate_replays_a_trace_without_rates(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("timestamp_s,input_length,output_length\n0,300,20\n0.5,1200,7\n2,50,90\n")
    base = [sys.executable, "-m", "planner", "simulate", "--profile", "illustrative", "--setup", "single"]
    base += ["--workload", "trace", "--dataset", str(path)]
    own = subprocess.run([*base, "--trace-time-scale", "2"], capture_output=True, text=True, timeout=120)
    assert own.returncode == 0, own.stderr
    assert "own times x2 (mean 0.5 req/s offered; own 1)" in own.stdout
    bad = subprocess.run([*base, "--trace-time-scale", "2", "--rates", "3"], capture_output=True, text=True)
    (error,) = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert bad.returncode == 2 and "a rate sets the scale" in error
