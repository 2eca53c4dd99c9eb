"""disagg/campaigns/h200x2_frontier.sh, the one-call device wrapper, run for real with stand-ins for what
only a GPU host has (python3 with vLLM, nvidia-smi): `--then` chains campaigns within one budget."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "disagg" / "campaigns" / "h200x2_frontier.sh"
FAKE_PYTHON = """#!/bin/bash
# stands in for the host's python3: records each call's arguments, one per line, and a separator
printf '%s\\n' "$@" >> "$CALLS"; echo '--' >> "$CALLS"
"""


def run_wrapper(
    tmp: Path, budget_s: int, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir, stage, site = tmp / "bin", tmp / "stage", tmp / "site"
    for d in (bin_dir, stage, site / "vllm"):
        d.mkdir(parents=True, exist_ok=True)
    (site / "vllm" / "__init__.py").write_text("")  # installed: the wrapper skips the bundle install
    (stage / "env.sh").write_text("export FROM_ENV_SH=1\n")
    for name, body in (("python3", FAKE_PYTHON), ("nvidia-smi", "#!/bin/bash\necho index,name\n")):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    calls = tmp / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls),
           "STACK": "nixl", "STAGE_DIR": str(stage), "SITE_DIR": str(site), "RES": str(tmp / "res"),
           "BUDGET_S": str(budget_s)}  # fmt: skip
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(WRAPPER), *args], env=env, capture_output=True, text=True, timeout=60)
    text = calls.read_text() if calls.exists() else ""
    recorded = [c.strip("\n").split("\n") for c in text.split("--\n") if c.strip()]
    return proc, [c for c in recorded if c[:2] == ["-m", "disagg.campaigns.frontier"]]


def test_then_chains_campaigns_within_one_budget(tmp_path: Path) -> None:
    proc, campaigns = run_wrapper(
        tmp_path, 300, "--setups", "pd-nixl", "--launch-args", "--kv-block-size 64", "--then",
        "--setups", "pd-nixl", "--launch-args", "--nixl-mode push", "--rates", "12",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(campaigns) == 2
    for campaign, variant in zip(campaigns, ("--kv-block-size 64", "--nixl-mode push"), strict=True):
        assert campaign[2:4] == ["--results", str(tmp_path / "res")]
        assert 290 <= float(campaign[campaign.index("--budget-s") + 1]) <= 300  # what is left of the budget
        assert campaign[campaign.index("--launch-args") + 1] == variant  # one argument, spaces kept
    assert "--then" not in campaigns[0] + campaigns[1] and campaigns[1][-2:] == ["--rates", "12"]
    assert list((tmp_path / "res").glob("gpus-*.csv"))  # the GPUs' state is saved beside the runs


def test_a_campaign_with_under_a_minute_left_is_skipped(tmp_path: Path) -> None:
    proc, campaigns = run_wrapper(tmp_path, 30, "--setups", "pd-nixl", "--then", "--setups", "single")
    assert proc.returncode == 0, proc.stderr
    assert campaigns == [] and proc.stdout.count("skipped (") == 2


def test_an_unknown_stack_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(WRAPPER)], env={**os.environ, "STACK": "ucx"}, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "STACK must be p2p or nixl" in proc.stdout
