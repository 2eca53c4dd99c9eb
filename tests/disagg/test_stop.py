"""`./start_disaggregated_servers.sh stop` against a launcher held in the foreground.

Real processes: the launcher, two fake vLLM servers (tests/traditional/fake_vllm) and the real proxy.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import free_port
from tests.traditional.foreground import ROOT, foreground, kill_group, run_stop


def _args(run_dir: Path) -> list[str]:
    ports = [str(free_port()) for _ in range(3)]
    return [
        "--cpu",
        "--model",
        "fake-model",
        "--run-dir",
        str(run_dir),
        "--proxy-port",
        ports[0],
        "--prefill-port",
        ports[1],
        "--decode-port",
        ports[2],
    ]


def test_stop_script_is_quiet_and_exits_zero_on_both_sides(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with foreground("disagg", _args(run_dir), tmp_path, run_dir) as fg:
        fg.wait_holding()
        stop = run_stop([str(ROOT / "start_disaggregated_servers.sh"), "stop", str(run_dir)], tmp_path)
        assert stop.returncode == 0 and "Traceback" not in stop.stderr, stop.stderr
        assert stop.stdout.startswith("stopped: decode0 (pid ") and "prefill0" in stop.stdout, stop.stdout
        assert "proxy" in stop.stdout
        assert fg.finish() == 0, fg.stderr
    assert "stopped on request" in fg.stdout
    assert "error" not in fg.stderr and "Traceback" not in fg.stderr, fg.stderr
    assert not list(run_dir.glob("*.pid"))


def test_a_decode_instance_that_dies_on_its_own_is_an_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with foreground("disagg", _args(run_dir), tmp_path, run_dir) as fg:
        fg.wait_holding()
        kill_group(run_dir, "decode0")
        assert fg.finish() == 1
        # The launcher stopped the rest itself; a later `stop` finds nothing left and says so.
        stop = run_stop([str(ROOT / "disagg" / "stop.sh"), str(run_dir)], tmp_path)
        assert stop.returncode == 0 and stop.stdout.startswith("stopped: nothing"), stop.stdout
    errors = [line for line in fg.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: decode0 on :"), fg.stderr
    assert f"see {run_dir}/decode0.log" in errors[0] and "Traceback" not in fg.stderr
