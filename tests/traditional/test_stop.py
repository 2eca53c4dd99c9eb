"""`python -m traditional stop` against a launcher held in the foreground.

Real processes: the launcher, and a fake vLLM server (tests/traditional/fake_vllm) that answers /health.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import free_port
from tests.traditional.foreground import foreground, kill_group, run_stop


def _args(run_dir: Path) -> list[str]:
    return ["--cpu", "--model", "fake-model", "--port", str(free_port()), "--run-dir", str(run_dir)]


def test_stop_is_quiet_and_exits_zero_on_both_sides(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with foreground("traditional", _args(run_dir), tmp_path, run_dir) as fg:
        fg.wait_holding()
        pid = (run_dir / "server.pid").read_text()
        # No RUN_DIR: the pointer the launcher left in its working directory names the run.
        stop = run_stop([sys.executable, "-m", "traditional", "stop"], tmp_path)
        assert (stop.returncode, stop.stderr) == (0, ""), stop.stderr
        assert stop.stdout.strip() == f"stopped: server (pid {pid})"
        assert fg.finish() == 0, fg.stderr
    assert "stopped on request" in fg.stdout
    assert "error" not in fg.stderr and "Traceback" not in fg.stderr, fg.stderr
    assert not (run_dir / "server.pid").exists()


def test_an_instance_that_dies_on_its_own_is_an_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with foreground("traditional", _args(run_dir), tmp_path, run_dir) as fg:
        fg.wait_holding()
        kill_group(run_dir, "server")
        assert fg.finish() == 1
    errors = [line for line in fg.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"see {run_dir}/server.log" in errors[0], fg.stderr
    assert errors[0].startswith("error: server on :") and "exited on its own (code -9)" in errors[0]
    assert "Traceback" not in fg.stderr


def test_a_stale_stop_request_does_not_hide_a_crash(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "stop-requested").write_text("left by an earlier run in this directory\n")
    with foreground("traditional", _args(run_dir), tmp_path, run_dir) as fg:
        fg.wait_holding()
        kill_group(run_dir, "server")
        assert fg.finish() == 1, fg.stdout


def test_stop_needs_a_run_to_stop(tmp_path: Path) -> None:
    none = run_stop([sys.executable, "-m", "traditional", "stop"], tmp_path)
    assert none.returncode == 2 and "no run directory given" in none.stderr
    missing = run_stop([sys.executable, "-m", "traditional", "stop", str(tmp_path / "nope")], tmp_path)
    assert (
        missing.returncode == 2 and "no run directory" in missing.stderr and "Traceback" not in missing.stderr
    )
