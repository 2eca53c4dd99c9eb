"""`python -m proxy`: help, one-line errors with exit 2, and a real served request."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from fake_upstream import FakeUpstream
from sse import TIMING_COMMENT_PREFIX
from tests.conftest import free_port
from tests.proxy.harness import completion_body, run

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def proxy_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "proxy", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_help_explains_every_option() -> None:
    result = proxy_cli("--help")
    assert result.returncode == 0
    options = set(re.findall(r"(--[a-z-]+)", result.stdout))
    expected = {
        "--connector", "--prefill", "--decode", "--backend", "--select", "--stage-log", "--discovery-port",
        "--prefill-timeout", "--decode-timeout", "--decode-chunk-timeout", "--connect-timeout",
        "--request-read-timeout", "--eject-time", "--retries", "--probe-interval", "--setup-file",
    }  # fmt: skip
    assert expected <= options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "error: unrecognized arguments: --bogus"),
        (["--connector", "nope"], "error: argument --connector: invalid choice"),
        (["--port", "x"], "error: argument --port: invalid int value"),
        (["--retries", "2"], "error: argument --retries: invalid choice: 2 (choose from 0, 1)"),
        (["--connector", "example", "--prefill", "http://127.0.0.1:1"], "error: no decode instance"),
        (
            [
                "--connector",
                "p2p_nccl",
                "--prefill",
                "http://127.0.0.1:1",
                "--decode",
                "http://127.0.0.1:2@h:3",
            ],
            "error: p2p_nccl needs the KV (ZMQ) address",
        ),
        (
            ["--connector", "example", "--prefill", "ftp://x", "--decode", "http://h:1"],
            "error: bad instance URL",
        ),
        (
            [
                "--connector",
                "example",
                "--prefill",
                "http://h:1",
                "--decode",
                "http://h:2",
                "--decode-timeout",
                "0",
            ],
            "error: decode_timeout_s must be > 0",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = proxy_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_cli_serves_requests_and_stops_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "stages.jsonl"

    async def scenario() -> None:
        p, d = FakeUpstream(), FakeUpstream()
        await p.start()
        await d.start()
        proc = await asyncio.create_subprocess_exec(
            PY, "-m", "proxy", "--port", "0", "--connector", "example", "--prefill", p.url, "--decode", d.url,
            "--stage-log", str(log), cwd=REPO, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            match = re.search(r"proxy on (http://127\.0\.0\.1:\d+) connector=example", line)
            assert match, line
            assert f"prefill[round_robin]={p.url}" in line and f"decode[round_robin]={d.url}" in line
            async with (
                aiohttp.ClientSession() as session,
                session.post(match[1] + "/v1/completions", json=completion_body()) as resp,
            ):
                assert resp.status == 200
                assert TIMING_COMMENT_PREFIX in await resp.read()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await p.stop()
            await d.stop()

    run(scenario(), timeout_s=60)
    assert len(log.read_bytes().splitlines()) == 1


def test_a_failed_request_is_one_warning_line_at_the_default_log_level() -> None:
    async def scenario() -> str:
        p = FakeUpstream()
        await p.start()
        dead = f"http://127.0.0.1:{free_port()}"
        proc = await asyncio.create_subprocess_exec(
            PY, "-m", "proxy", "--port", "0", "--connector", "example", "--prefill", p.url, "--decode", dead,
            cwd=REPO, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            url = re.search(r"proxy on (http://\S+)", line)[1]  # type: ignore[index]
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    url + "/v1/completions", json=completion_body(), headers={"X-Request-Id": "c-1"}
                ) as resp,
            ):
                assert resp.status == 503
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 15)
            return err.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await p.stop()

    stderr = run(scenario(), timeout_s=60)
    lines = [line for line in stderr.splitlines() if "request c-1 failed" in line]
    assert len(lines) == 1, stderr
    assert (
        " WARNING proxy: request c-1 failed: status 503, leg decode, instance http://127.0.0.1:" in lines[0]
    )
    assert lines[0].endswith("is unreachable: Connection refused")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        (b"{nope", "not valid JSON"),
        (b"[1, 2]", "must hold a JSON object, not list"),
    ],
)
def test_a_bad_setup_file_is_one_line_and_exit_2(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "setup.json"
    if content is not None:
        path.write_bytes(content)
    result = proxy_cli(
        "--connector",
        "example",
        "--prefill",
        "http://h:1",
        "--decode",
        "http://h:2",
        "--setup-file",
        str(path),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --setup-file {path}: {message}"), result.stderr


def test_port_in_use_is_a_clear_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = proxy_cli(
            "--port", str(port), "--connector", "example", "--prefill", "http://h:1", "--decode", "http://h:2"
        )
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert os.linesep not in result.stderr.strip()


def test_every_option_has_help() -> None:
    from proxy.cli import build_parser

    for action in build_parser()._actions:
        assert action.help, action.option_strings


def test_discovery_port_in_use_is_a_clear_error() -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        result = proxy_cli("--port", "0", "--connector", "p2p_nccl", "--discovery-port", str(port))
    finally:
        sock.close()
        ctx.term()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: cannot bind discovery socket tcp://127.0.0.1:{port}"
    )
