"""A leg the proxy retried is a measured fact: run_experiment.py through the real proxy (`python -m proxy`
over HTTP) to two fake instances, one of which never answers a generation request within the proxy's
chunk timeout (a fault before any byte reached the client; it then leaves rotation for the run). With
the proxy's retry on, that request succeeds on the other instance, its stage record says retries 1, the
summary counts it apart from the client's own retries, and the result warns; with `--retries 0` it fails
and counts as failed, and the other instance never sees it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from experiments.model_dir import write_model_dir
from experiments.schema import RunResult
from experiments.schema.run_warning import PROXY_RETRIED, RETRIED
from fake_upstream import FakeBehavior, FakeUpstream

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 3
CHUNK_TIMEOUT_S = 2.0  # the proxy's --decode-chunk-timeout: the slow instance's headers come later
SLOW = FakeBehavior(delay_s=3 * CHUNK_TIMEOUT_S)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model") / "m")


@contextmanager
def proxy(backends: list[str], retries: int | None, log: Path) -> Iterator[str]:
    """`python -m proxy` in pass-through mode over `backends`; an instance that timed out stays out of
    rotation for the whole run."""
    cmd = [sys.executable, "-m", "proxy", "--port", "0", "--connector", "passthrough"]
    cmd += ["--backend", ",".join(backends), "--eject-time", "600"]
    cmd += ["--decode-chunk-timeout", str(CHUNK_TIMEOUT_S)]
    cmd += [] if retries is None else ["--retries", str(retries)]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"proxy on (http://127\.0\.0\.1:\d+) ", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield match[1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_through(url: str, out: Path, name: str) -> RunResult:
    args = [
        "--mode", "passthrough", "--endpoint", url, "--input-len", "8", "--output-len", "4",
        "--num-requests", str(REQUESTS), "--warmup", "0", "--arrival", "closed", "--concurrency", "1",
        "--monitor", "none", "--idle-seconds", "0", "--output-dir", str(out), "--run-name", name,
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "run_experiment.py", *args], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    return RunResult.load(out / name)


@pytest.mark.parametrize("retries", [None, 1])  # the default is the retry on
def test_a_retried_request_succeeds_and_is_counted_and_warned(
    model_dir: Path, tmp_path: Path, retries: int | None
) -> None:
    with (
        FakeUpstream(SLOW, root=str(model_dir)) as slow,
        FakeUpstream(FakeBehavior(), root=str(model_dir)) as good,
        proxy([slow.url, good.url], retries, tmp_path / "proxy.log") as url,
    ):
        res = run_through(url, tmp_path, "on")
        assert (len(slow.received), len(good.received)) == (1, REQUESTS)  # the retried one on both
    (retried,) = [r for r in res.records if r.stages is not None and r.stages.retries]
    assert retried.succeeded and retried.stages is not None and retried.stages.retries == 1
    assert retried.stages.decode_url == good.url
    assert retried.retries == 0  # the client itself did not send it again
    assert retried.ttft_ms is not None and retried.ttft_ms >= CHUNK_TIMEOUT_S * 1000  # the failed leg
    rest = [r for r in res.records if r is not retried]
    assert len(rest) == REQUESTS - 1
    assert all(r.succeeded and r.stages is not None and r.stages.retries == 0 for r in rest)
    s = res.summary
    assert s is not None and (s.completed, s.failed, s.proxy_retried, s.retried) == (REQUESTS, 0, 1, 0)
    (warning,) = [w for w in res.warnings if w.code == PROXY_RETRIED]
    assert (warning.observed, warning.threshold) == (1.0, 0.0)
    assert "--retries 0" in warning.message
    assert not [w for w in res.warnings if w.code == RETRIED]
    assert RunResult.load(tmp_path / "on").summary.proxy_retried == 1  # type: ignore[union-attr]


def test_with_retries_off_the_failed_leg_fails_the_request(model_dir: Path, tmp_path: Path) -> None:
    with (
        FakeUpstream(SLOW, root=str(model_dir)) as slow,
        FakeUpstream(FakeBehavior(), root=str(model_dir)) as good,
        proxy([slow.url, good.url], 0, tmp_path / "proxy.log") as url,
    ):
        res = run_through(url, tmp_path, "off")
        assert (len(slow.received), len(good.received)) == (1, REQUESTS - 1)  # not sent again
    (failed,) = [r for r in res.records if not r.succeeded]
    assert failed.status == 504 and slow.url in str(failed.failure), failed.failure
    rest = [r for r in res.records if r is not failed]
    assert all(r.succeeded and r.stages is not None and r.stages.retries == 0 for r in rest)
    s = res.summary
    assert s is not None and (s.completed, s.failed, s.proxy_retried) == (REQUESTS - 1, 1, 0)
    assert not [w for w in res.warnings if w.code == PROXY_RETRIED]
    assert "retries=0" in (tmp_path / "proxy.log").read_text()
