"""disagg/campaigns/h200x2_frontier.sh, the one-call device wrapper, run for real with stand-ins for what
only a GPU host has (python3 with vLLM, nvidia-smi): `--then` chains campaigns within one budget."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "disagg" / "campaigns" / "h200x2_frontier.sh"
FAKE_PYTHON = """#!/bin/bash
# stands in for the host's python3: records each call's arguments, one per line, and a separator
printf '%s\\n' "$@" >> "$CALLS"; echo '--' >> "$CALLS"
"""


def fake_gpu_host(tmp: Path) -> tuple[Path, Path, Path]:
    """bin/ (the recording python3, nvidia-smi), the bundle's stage and an installed site: the wrapper
    skips the bundle install and sources the stage's env.sh."""
    bin_dir, stage, site = tmp / "bin", tmp / "stage", tmp / "site"
    for d in (bin_dir, stage, site / "vllm"):
        d.mkdir(parents=True, exist_ok=True)
    (site / "vllm" / "__init__.py").write_text("")
    (stage / "env.sh").write_text("export FROM_ENV_SH=1\n")
    for name, body in (("python3", FAKE_PYTHON), ("nvidia-smi", "#!/bin/bash\necho index,name\n")):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    return bin_dir, stage, site


def run_wrapper(
    tmp: Path, budget_s: int, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir, stage, site = fake_gpu_host(tmp)
    calls = tmp / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls),
           "STACK": "nixl", "STAGE_DIR": str(stage), "SITE_DIR": str(site), "RES": str(tmp / "res"),
           "BUDGET_S": str(budget_s), "RUNS_DIR": str(tmp / "runs")}  # fmt: skip
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
        assert campaign[campaign.index("--launch-dir") + 1] == str(tmp_path / "runs")  # RUNS_DIR's
    assert "--then" not in campaigns[0] + campaigns[1] and campaigns[1][-2:] == ["--rates", "12"]
    assert list((tmp_path / "res").glob("gpus-*.csv"))  # the GPUs' state is saved beside the runs


def test_a_campaign_with_under_a_minute_left_is_skipped(tmp_path: Path) -> None:
    proc, campaigns = run_wrapper(tmp_path, 30, "--setups", "pd-nixl", "--then", "--setups", "single")
    assert proc.returncode == 0, proc.stderr
    assert campaigns == [] and proc.stdout.count("skipped (") == 2


def test_a_call_with_no_launcher_dir_packs_its_results_and_no_logs(tmp_path: Path) -> None:
    """No RUNS_DIR on the host (nothing launched): results.tgz as ever, and no logs.tgz. The packing once
    ran its tar in the working tree when the launcher dir was missing, which packed the whole checkout."""
    bin_dir, stage, site = fake_gpu_host(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS": str(tmp_path / "c"),
           "STAGE_DIR": str(stage), "SITE_DIR": str(site), "RES": str(tmp_path / "res"), "BUDGET_S": "300",
           "RUNS_DIR": str(tmp_path / "no-runs"), "OUT": str(out)}  # fmt: skip
    cmd = ["bash", str(WRAPPER), "--setups", "single"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["results.tgz"]


def test_an_unknown_stack_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(WRAPPER)], env={**os.environ, "STACK": "ucx"}, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "STACK must be p2p or nixl" in proc.stdout


MODEL_WRAPPER = ROOT / "disagg" / "campaigns" / "h200_model.sh"


def test_model_sweep_is_two_kept_up_campaigns_whose_on_start_profiles_and_predicts(tmp_path: Path) -> None:
    bin_dir, stage, site = fake_gpu_host(tmp_path)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls),
           "STAGE_DIR": str(stage), "SITE_DIR": str(site), "BUDGET_S": "300",
           "RES": str(tmp_path / "res"), "RUNS_DIR": str(tmp_path / "runs"),
           "DECODE_MIN_ARRIVAL_S": "100"}  # fmt: skip
    for model in ("qwen2.5-32b", "qwen3-30b-a3b"):  # the MoE's instance, left up by an earlier call
        (tmp_path / "runs" / model / "single").mkdir(parents=True)
        (tmp_path / "runs" / model / "single" / "launch.json").write_text("{}")
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(MODEL_WRAPPER), "qwen2.5-32b", "1,2,3,4", "0.5,1"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = [c.strip("\n").split("\n") for c in calls.read_text().split("--\n") if c.strip()]
    campaigns = [c for c in recorded if c[:2] == ["-m", "disagg.campaigns.frontier"]]
    assert len(campaigns) == 2
    stops = [c for c in recorded if c[:3] == ["-m", "traditional", "stop"]]
    assert stops == [["-m", "traditional", "stop", f"{tmp_path}/runs/qwen3-30b-a3b/single/"]]  # not its own
    # each shape its own arrival time: decode-heavy's set (its E2E is the longer), prefill-heavy's the default
    shapes = zip(
        campaigns, ("prefill-heavy", "decode-heavy"), ("1,2,3,4", "0.5,1"), ("60", "100"), strict=True
    )
    for c, shape, rates, arrival_s in shapes:
        flag = {c[i]: c[i + 1] for i in range(len(c) - 1) if c[i].startswith("--")}
        assert (flag["--shapes"], flag["--rates"], flag["--model"], flag["--gpu-ids"]) == (
            shape,
            rates,
            "qwen2.5-32b",
            "0",
        )
        assert "--keep-up" in c and flag["--launch-args"] == "--max-model-len 17408"
        assert flag["--launch-dir"] == f"{tmp_path}/runs/qwen2.5-32b"
        assert (flag["--min-arrival-s"], flag["--num-requests"]) == (arrival_s, "20")
        assert flag["--on-start"] == "bash disagg/campaigns/h200_model.sh --on-start {endpoint}"


def test_model_on_start_predicts_each_point_once_from_the_profile(tmp_path: Path) -> None:
    """The hook with a profile already in RES: it predicts every point (the campaign's own requests and
    seeds, real planner) and, run again, predicts nothing twice."""
    res = tmp_path / "res"
    (res / "profile").mkdir(parents=True)
    shutil.copy(ROOT / "results" / "profiles" / "h200-8b.json", res / "profile" / "h200-llama-3.1-8b.json")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/bash\nexec "{sys.executable}" "$@"\n')  # this venv's
    (bin_dir / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RES": str(res),
           "MODEL": "llama-3.1-8b", "PREFILL_RATES": "4,8", "DECODE_RATES": "4", "MIN_ARRIVAL_S": "10",
           "NUM_REQUESTS": "20", "DECODE_MIN_ARRIVAL_S": "15"}  # fmt: skip
    cmd = ["bash", str(MODEL_WRAPPER), "--on-start", "http://127.0.0.1:9"]  # no server: the profile exists
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    pred = {p.name: json.loads(p.read_text())["workload"] for p in (res / "predicted").iterdir()}
    # requests = max(20, rate x 10 s), decode-heavy rate x its own 15 s; seeds: the shape's base + the
    # rate's index among its own rates
    assert {n: (w["num_requests"], w["seed"], w["input_len"], w["output_len"]) for n, w in pred.items()} == {
        "prefill-heavy-single-rate4.json": (40, 1000, 2048, 256),
        "prefill-heavy-single-rate8.json": (80, 1001, 2048, 256),
        "decode-heavy-single-rate4.json": (60, 2000, 512, 1024),
    }
    assert first.stdout.count("predicted before its run") == 3
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "predicted before its run" not in again.stdout


def test_a_later_session_resumes_from_the_committed_runs_and_packs_none_of_them(tmp_path: Path) -> None:
    """RES on the device starts empty each session: the wrapper seeds it from the committed folder (here
    the MoE's profile, predictions and its rate-4 prefill-heavy run), the real frontier then has only the
    other rates to run, and $OUT brings back none of the seeded files."""
    moe = ROOT / "results" / "h200" / "models" / "qwen3-30b-a3b"
    committed = tmp_path / "committed"
    for sub in ("profile", "predicted", "prefill-heavy/single/20261205-034014-traditional-rate4"):
        shutil.copytree(moe / sub, committed / sub)
    bin_dir, stage, site = fake_gpu_host(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    res = tmp_path / "res"
    # the launcher's log is packed as its last 300 lines from RUNS_DIR (not the host's /tmp/testbed-runs,
    # whatever that holds); a pipe named like a log is no file and is passed over (tail would wait on it)
    log = tmp_path / "runs" / "qwen3-30b-a3b" / "single" / "server.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(1, 401)))
    os.mkfifo(tmp_path / "runs" / "stray.log")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS": str(tmp_path / "c"),
           "STAGE_DIR": str(stage), "SITE_DIR": str(site), "BUDGET_S": "300", "RES": str(res),
           "RUNS_DIR": str(tmp_path / "runs"), "COMMITTED": str(committed), "OUT": str(out)}  # fmt: skip
    cmd = ["bash", str(MODEL_WRAPPER), "qwen3-30b-a3b", "4,8", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"resumed from {committed}: 1 finished points" in proc.stdout
    profile = res / "profile" / "h200-qwen3-30b-a3b.json"
    assert profile.read_bytes() == (moe / "profile" / "h200-qwen3-30b-a3b.json").read_bytes()
    assert len(list((res / "predicted").iterdir())) == len(list((moe / "predicted").iterdir()))
    with tarfile.open(out / "results.tgz") as tgz:  # this call wrote only the GPUs' state
        assert [Path(n).name for n in tgz.getnames() if not n.endswith("/")] == [
            p.name for p in res.glob("gpus-*.csv")
        ]
    tail_name = "./qwen3-30b-a3b/single/server.log.tail"
    with tarfile.open(out / "logs.tgz") as tgz:
        assert sorted(n for n in tgz.getnames() if n.endswith(".tail")) == [tail_name]
        tail = tgz.extractfile(tail_name)
        assert tail is not None
        assert tail.read().decode().splitlines() == [f"line {i}" for i in range(101, 401)]
    todo = subprocess.run(
        [sys.executable, "-m", "disagg.campaigns.frontier", "--setups", "single", "--shapes", "prefill-heavy",
         "--rates", "4,8", "--results", str(res), "--print-points"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert todo.returncode == 0, todo.stderr
    assert [line.split()[:3] for line in todo.stdout.splitlines()] == [["single", "prefill-heavy", "8"]]
    # a RES that has its own profile (this session's) is not overwritten by the committed one
    profile.write_text("{}")
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "resumed from" not in again.stdout and profile.read_text() == "{}"
