"""Command line: `python -m proxy --connector example --prefill URL --decode URL [...]`.

Serves with uvicorn (httptools) by default, hypercorn with `--server hypercorn`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from proxy.app import create_app
from proxy.config import CONNECTORS, POLICIES, RETRIES, ConfigError, ProxyConfig, parse_instances
from proxy.connectors import resolve_connector
from proxy.server import SERVERS, bind_listen_socket, serve_app
from proxy.setup_view import read_setup_file
from testbed.cli_errors import OneLineErrorParser

_EPILOG = """\
Instance lists are comma-separated. An instance is its HTTP base URL, optionally followed by
@HOST:KV_PORT, its KV (ZMQ) address, which p2p_nccl needs, e.g.
  --prefill http://10.0.0.1:8100@10.0.0.1:21001 --decode http://10.0.0.2:8200@10.0.0.2:22001
Responses carry the stage timing: header x-proxy-timing (non-streaming) or the SSE comment
': proxy-timing {json}' right before 'data: [DONE]' (streaming). See reference/proxy_protocol.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(
        prog="python -m proxy",
        description="Disaggregated-serving proxy: splits each request into a prefill leg and a decode leg.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default 8000)"
    )
    p.add_argument(
        "--connector",
        choices=CONNECTORS,
        default="auto",
        help="KV connector protocol: p2p_nccl (vLLM <= 0.23), nixl (>= 0.24), example (shared storage, CPU), "
        "passthrough (no split, load balancing over --backend); auto picks p2p_nccl or nixl by the installed "
        "vLLM version (default auto)",
    )
    p.add_argument("--prefill", metavar="URL[@KV][,...]", help="prefill instances")
    p.add_argument("--decode", metavar="URL[@KV][,...]", help="decode instances")
    p.add_argument("--backend", metavar="URL[,...]", help="independent instances for --connector passthrough")
    p.add_argument(
        "--policy",
        default="split",
        metavar="split|local|threshold:N|load[:P_TOKENS[:D_REQUESTS]]",
        help="which path each request takes: split (prefill leg then decode leg), local (the decode "
        "instance alone, no KV moved), threshold:N (split when the prompt has >= N tokens, else local), "
        "load (local when the least-loaded prefill instance has >= P_TOKENS prompt tokens in flight and "
        "the decode instance < D_REQUESTS requests; defaults 4096 and 32); default split",
    )
    p.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="model directory whose tokenizer counts prompt tokens for threshold/load (default: "
        "ceil(characters / 4))",
    )
    p.add_argument(
        "--select",
        choices=POLICIES,
        default="round_robin",
        help="instance selection for both roles: round_robin, least_outstanding, or prefix (the instance "
        "the proxy sent the longest prefix of this prompt to, then the least outstanding; default "
        "round_robin)",
    )
    p.add_argument(
        "--prefill-select", choices=POLICIES, help="policy for prefill instances (overrides --select)"
    )
    p.add_argument(
        "--decode-select", choices=POLICIES, help="policy for decode/backend instances (overrides --select)"
    )
    p.add_argument(
        "--discovery-port",
        type=int,
        metavar="PORT",
        help="bind a ZMQ ROUTER here for vLLM P2pNcclEngine heartbeats (xPyD registration); off by default",
    )
    p.add_argument(
        "--discovery-host", metavar="HOST", help="address of the discovery socket (default: --host)"
    )
    p.add_argument(
        "--discovery-ttl",
        type=float,
        metavar="S",
        default=10.0,
        help="seconds a registered instance stays without a heartbeat (vLLM sends one every 3 s; default 10)",
    )
    p.add_argument(
        "--stage-log", type=Path, metavar="PATH", help="append one JSON line of stage timing per request here"
    )
    p.add_argument(
        "--prefill-timeout",
        type=float,
        metavar="S",
        default=300.0,
        help="prefill leg total timeout, s (default 300)",
    )
    p.add_argument(
        "--decode-timeout",
        type=float,
        metavar="S",
        default=3600.0,
        help="decode leg total timeout, s (default 3600)",
    )
    p.add_argument(
        "--decode-chunk-timeout",
        type=float,
        metavar="S",
        default=300.0,
        help="longest gap between two chunks of a streamed decode answer, s (default 300)",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        metavar="S",
        default=5.0,
        help="TCP connect timeout per leg, s (default 5)",
    )
    p.add_argument(
        "--health-timeout",
        type=float,
        metavar="S",
        default=2.0,
        help="per-backend timeout of GET /health, s (default 2)",
    )
    p.add_argument(
        "--request-read-timeout",
        type=float,
        metavar="S",
        default=30.0,
        help="a client's request head, and then its body, must arrive within this; else 408 (default 30)",
    )
    p.add_argument(
        "--eject-time",
        type=float,
        metavar="S",
        default=5.0,
        help="passive health: an instance that refuses a connection or times out leaves rotation for at "
        "least S s, then comes back when its /health answers 200; a request that failed on it before any "
        "byte reached the client is retried once on another instance (--retries); 0 never takes one out "
        "(the retry stays; default 5)",
    )
    p.add_argument(
        "--retries",
        type=int,
        choices=RETRIES,
        default=1,
        help="1: a leg that met a backend fault before any byte reached the client is sent once more to "
        "another instance of its role (the stage record counts it, and the runner warns: that request's "
        "TTFT includes the failed leg); 0: no retry, the failed leg fails the request (502/503 with the "
        "error), for measured runs (default 1)",
    )
    p.add_argument(
        "--probe-interval",
        type=float,
        metavar="S",
        default=1.0,
        help="how often an instance out of rotation is asked for its /health, s (default 1)",
    )
    p.add_argument(
        "--setup-file",
        type=Path,
        metavar="PATH",
        help="JSON object describing the serving setup (the launcher writes it); served at GET /setup "
        "with the proxy's own live view",
    )
    p.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="(default info)"
    )
    p.add_argument(
        "--no-uvloop", action="store_true", help="use the default asyncio loop even if uvloop is installed"
    )
    p.add_argument(
        "--server",
        choices=SERVERS,
        default="uvicorn",
        help="ASGI server (default uvicorn with httptools: about half hypercorn's CPU per chunk)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> ProxyConfig:
    """Parsed arguments -> validated ProxyConfig (connector resolved); raises ConfigError."""
    connector = resolve_connector(args.connector)
    if args.backend and connector != "passthrough":
        raise ConfigError("--backend is for --connector passthrough; use --prefill/--decode to split")
    if connector == "passthrough" and args.decode:
        raise ConfigError("--connector passthrough takes its instances from --backend, not --decode")
    decode_text = args.backend if connector == "passthrough" else args.decode
    config = ProxyConfig(
        connector=connector,
        prefill=parse_instances(args.prefill) if args.prefill else [],
        decode=parse_instances(decode_text) if decode_text else [],
        prefill_select=args.prefill_select or args.select,
        decode_select=args.decode_select or args.select,
        host=args.host,
        port=args.port,
        discovery_host=args.discovery_host,
        discovery_port=args.discovery_port,
        discovery_ttl_s=args.discovery_ttl,
        stage_log=args.stage_log,
        prefill_timeout_s=args.prefill_timeout,
        decode_timeout_s=args.decode_timeout,
        decode_chunk_timeout_s=args.decode_chunk_timeout,
        connect_timeout_s=args.connect_timeout,
        health_timeout_s=args.health_timeout,
        request_read_timeout_s=args.request_read_timeout,
        eject_s=args.eject_time,
        probe_interval_s=args.probe_interval,
        setup_file=args.setup_file,
        policy=args.policy,
        tokenizer=args.tokenizer,
        retries=args.retries,
    )
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"--port {config.port} is out of range 0..65535")
    config.validate()
    if config.stage_log is not None and not config.stage_log.parent.is_dir():
        raise ConfigError(f"--stage-log directory {config.stage_log.parent} does not exist")
    if config.setup_file is not None:
        read_setup_file(config.setup_file)  # fail at start, not at the first GET /setup
    return config


def _run(coro_factory: object, use_uvloop: bool) -> None:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            use_uvloop = False
    if use_uvloop:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro_factory())  # type: ignore[operator]
    else:
        asyncio.run(coro_factory())  # type: ignore[operator]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad input, 1 when serving fails)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    try:
        config = config_from_args(args)
        app = create_app(config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind_listen_socket(config.host, config.port)
    except OSError as exc:
        print(f"error: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        app.extensions["proxy"].open_resources()
    except OSError as exc:
        sock.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        _run(lambda: serve_app(app, sock, server=args.server), use_uvloop=not args.no_uvloop)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # e.g. the discovery port is taken: startup fails inside the server
        cause = exc.__cause__ or exc
        print(f"error: proxy failed: {type(cause).__name__}: {cause}", file=sys.stderr)
        return 1
    return 0
