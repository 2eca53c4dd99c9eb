"""The setup names users type keep working: run_experiment.py's --mode names with their default GPU roles,
the frontier campaign's --setups with the launchers, modes and roles each one runs, and one-line errors
for a name neither knows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from disagg.campaigns import frontier
from experiments.model_dir import write_model_dir
from experiments.schema import RunResult
from fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = [
    "--input-len",
    "8",
    "--output-len",
    "2",
    "--rate",
    "1",
    "--num-requests",
    "3",
    "--arrival",
    "poisson",
]


def test_each_mode_keeps_its_name_and_default_gpu_roles(tmp_path: Path) -> None:
    """A real run per mode against the fake OpenAI server; the result records the mode's GPU roles."""
    expected = {
        "traditional": {0: "serving", 1: "idle"},
        "disagg": {0: "prefill", 1: "decode"},
        "passthrough": {0: "serving", 1: "serving"},
    }
    model = write_model_dir(tmp_path / "model")
    with FakeUpstream(root=str(model)) as srv:
        for mode in expected:
            flags = ["--mode", mode, "--endpoint", srv.url, "--run-name", mode, "--warmup", "0"]
            flags += ["--monitor", "none", "--idle-seconds", "0", "--gpu-ids", "0,1"]
            proc = _cli([*flags, *WORKLOAD, "--output-dir", str(tmp_path / "runs")])
            assert proc.returncode == 0, proc.stderr
    for mode, roles in expected.items():
        meta = RunResult.load(tmp_path / "runs" / mode).metadata
        assert (meta.mode, meta.config.mode, meta.config.gpu_roles) == (mode, mode, roles)


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "run_experiment.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_the_cards_commands_dry_run_and_an_unknown_mode_is_one_line() -> None:
    def dry(mode: str) -> subprocess.CompletedProcess[str]:
        return _cli(["--mode", mode, "--dry-run", *WORKLOAD])

    for mode in ("disagg", "traditional"):
        proc = dry(mode)
        assert proc.returncode == 0 and f"run_experiment: {mode} at http://127.0.0.1:8000" in proc.stdout
    bad = dry("disaggregated")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")
    assert "'traditional', 'disagg', 'passthrough'" in bad.stderr


def test_campaign_setups_launch_and_drive_as_before() -> None:
    p, d, proxy = "http://127.0.0.1:8100", "http://127.0.0.1:8200", "http://127.0.0.1:8000"
    both = f"{p},{d}"
    expected = {  # name: (launcher, stop, endpoint, mode, GPU roles, server metrics)
        "single": (
            ("traditional", "--gpu", "0", "--port", "8100"),
            "traditional",
            p,
            "traditional",
            "serving,idle",
            p,
        ),
        "replicas": (("disagg", "--passthrough"), "disagg", proxy, "passthrough", "serving,serving", both),
        "pd": (("disagg",), "disagg", proxy, "disagg", "prefill,decode", both),
        "pd-nixl": (("disagg", "--connector", "nixl"), "disagg", proxy, "disagg", "prefill,decode", both),
    }
    got = {
        s.name: (s.launcher, s.stop, s.endpoint, s.mode, s.gpu_roles, s.server_metrics)
        for s in frontier.SETUPS.values()
    }
    assert got == expected


def test_an_unknown_campaign_setup_or_shape_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert frontier.main(["--setups", "single,pd-nccl"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --setups: unknown setup 'pd-nccl'; choose one of single, replicas, pd, pd-nixl\n"
    assert frontier.main(["--setups", "pd", "--shapes", "huge"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unknown shape 'huge'; choose from prefill-heavy")
