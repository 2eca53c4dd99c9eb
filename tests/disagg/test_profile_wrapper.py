"""disagg/campaigns/h200_profile.sh, the one-call profile of a model shape on one H200, run for real with
stand-ins for what only a GPU host has (python3 with vLLM, nvidia-smi)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "disagg" / "campaigns" / "h200_profile.sh"
FAKE_PYTHON = """#!/bin/bash
# stands in for the host's python3: records each call's arguments, one per line, and a separator; the
# launch fails when FAIL_LAUNCH is set
printf '%s\\n' "$@" >> "$CALLS"; echo '--' >> "$CALLS"
if [ "$2" = traditional ] && [ "$3" != stop ] && [ -n "${FAIL_LAUNCH:-}" ]; then exit 4; fi
if [ "$2" = traditional ] && [ "$3" != stop ]; then mkdir -p "$RUN_DIR"; echo ready > "$RUN_DIR/vllm.log"; fi
exit 0
"""


def run_wrapper(tmp: Path, *args: str, fail_launch: bool = False) -> tuple[subprocess.CompletedProcess[str],
                                                                           list[list[str]]]:  # fmt: skip
    bin_dir, stage, site, out = tmp / "bin", tmp / "stage", tmp / "site", tmp / "out"
    for d in (bin_dir, stage, site / "vllm", out):
        d.mkdir(parents=True, exist_ok=True)
    (site / "vllm" / "__init__.py").write_text("")  # installed: the wrapper skips the bundle install
    (stage / "env.sh").write_text("export FROM_ENV_SH=1\n")
    for name, body in (("python3", FAKE_PYTHON), ("nvidia-smi", "#!/bin/bash\necho index,name\n")):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    calls = tmp / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls),
           "STAGE_DIR": str(stage), "SITE_DIR": str(site), "OUT": str(out),
           "RUN_DIR": str(tmp / "run"), "LAUNCH_ARGS": "--kv-block-size 32"}  # fmt: skip
    if fail_launch:
        env["FAIL_LAUNCH"] = "1"
    proc = subprocess.run(["bash", str(WRAPPER), *args], env=env, capture_output=True, text=True, timeout=60)
    text = calls.read_text() if calls.exists() else ""
    return proc, [c.strip("\n").split("\n") for c in text.split("--\n") if c.strip()]


def test_launch_profile_and_stop_of_one_shape(tmp_path: Path) -> None:
    proc, calls = run_wrapper(tmp_path, "qwen3-30b-a3b", "--idle-seconds", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    launch, profile, stop = calls
    assert launch[:2] == ["-m", "traditional"] and launch[launch.index("--model") + 1] == "qwen3-30b-a3b"
    assert launch[launch.index("--max-model-len") + 1] == "17408" and launch[-2:] == ["--kv-block-size", "32"]
    assert profile[:3] == ["-m", "planner", "profile"] and profile[-2:] == ["--idle-seconds", "3"]
    out = tmp_path / "out"
    assert profile[profile.index("--output") + 1] == str(out / "h200-qwen3-30b-a3b.json")
    assert profile[profile.index("--decode-batches") + 1] == "1,4,16,64,128,256"
    assert stop == ["-m", "traditional", "stop", str(tmp_path / "run")]
    assert (out / "h200-qwen3-30b-a3b.launch.txt").read_text().startswith("launch of qwen3-30b-a3b: exit 0")
    assert (out / "h200-qwen3-30b-a3b.gpu.csv").exists() and (out / "h200-qwen3-30b-a3b.profile.log").exists()
    assert (out / "h200-qwen3-30b-a3b.vllm.log.tail").read_text() == "ready\n"


def test_a_failed_launch_profiles_nothing_and_still_stops(tmp_path: Path) -> None:
    proc, calls = run_wrapper(tmp_path, "qwen2.5-32b", fail_launch=True)
    assert proc.returncode == 4
    assert [c[:3] for c in calls] == [["-m", "traditional", "--gpu"], ["-m", "traditional", "stop"]]
    assert "exit 4" in (tmp_path / "out" / "h200-qwen2.5-32b.launch.txt").read_text()
