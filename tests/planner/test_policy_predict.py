"""`python -m planner policies`: every setup and policy at every SLO, the measured baselines beside."""

from __future__ import annotations

import json
from pathlib import Path

from planner.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_the_command_writes_every_setup_and_policy_at_every_slo(tmp_path: Path) -> None:
    out = tmp_path / "p"
    argv = ["policies", "--profile", str(ROOT / "results/profiles/h200-8b-nixl.json"), "--out", str(out),
            "--slo-grid", "ttft=500,2000 tpot=25", "--policies", "split,local,threshold:1024",
            "--num-requests", "300", "--measured", str(ROOT / "results/h200x2/frontier")]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads((out / "policies.json").read_text())
    cells = doc["cells"]
    setups = ["single", "replicas:2", "1P1D", "1P1D local", "1P1D threshold:1024"]
    assert sorted({c["setup"] for c in cells}) == sorted(setups)
    assert len(cells) == 2 * len(setups) * 2  # two workloads (no trace given) x setups x SLOs
    for c in cells:
        assert c["per_gpu"] == c["sustained_rps"] / c["gpus"]
        if c["setup"] == "1P1D local":  # local serves everything on D: P idle
            assert c["local_share"] in (None, 1.0)
        if c["setup"] == "1P1D":
            assert c["local_share"] in (None, 0.0)
    by = {(c["workload"], c["setup"], c["slo"]["ttft"]): c for c in cells}
    # 2048-token prompts all split at threshold:1024, 512-token prompts all stay local: the same runs
    for ttft in (500, 2000):
        assert by[("prefill-heavy", "1P1D threshold:1024", ttft)]["sustained_rps"] == by[
            ("prefill-heavy", "1P1D", ttft)]["sustained_rps"]  # fmt: skip
        assert by[("decode-heavy", "1P1D threshold:1024", ttft)]["sustained_rps"] == by[
            ("decode-heavy", "1P1D local", ttft)]["sustained_rps"]  # fmt: skip
    measured = {(m["workload"], m["setup"]) for m in doc["measured"]}
    assert measured == {(w, s) for w in ("prefill-heavy", "decode-heavy") for s in ("single", "replicas:2")}
    text = (out / "policies.md").read_text()
    assert "## decode-heavy: req/s per kW" in text and "meas. 2 replicas" in text
