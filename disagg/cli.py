"""The flags of `python -m disagg` / ./start_disaggregated_servers.sh, grouped by what they set."""

from __future__ import annotations

import argparse
from pathlib import Path

from disagg.kv_config import CONNECTORS, NIXL_BUFFER_DEVICES, NIXL_MODES, SEND_TYPES
from launch.cli import add_server_args
from testbed.cli_errors import OneLineErrorParser

DESCRIPTION = """Start X prefill instances (default GPU 0) and Y decode instances (default GPU 1) with a KV
connector (P2P NCCL on vLLM <= 0.23, NIXL after, the shared-storage example connector on CPU), then the
proxy; wait for every /health; write logs, pids and the launch plan (launch.json) to the run directory;
stop everything on Ctrl-C or with `./start_disaggregated_servers.sh stop [RUN_DIR]`."""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(
        prog="start_disaggregated_servers.sh",
        description=DESCRIPTION,
        epilog="Arguments after -- go to every vLLM instance unchanged.",
    )
    add_server_args(p)
    p.add_argument(
        "--connector",
        choices=("auto", *CONNECTORS),
        default="auto",
        help="KV connector: auto = p2p_nccl (vLLM <= 0.23) / nixl (>= 0.24) on GPU, example on CPU",
    )
    p.add_argument(
        "--passthrough",
        action="store_true",
        help="baseline: the same GPUs as independent single instances (no KV connector) behind the "
        "proxy's pass-through strategy; prefill-role slots become ordinary instances",
    )
    p.add_argument("--num-prefill", type=int, default=1, help="prefill instances (xPyD: X)")
    p.add_argument("--num-decode", type=int, default=1, help="decode instances (xPyD: Y)")
    p.add_argument("--prefill-gpus", default="0", help="GPU id per prefill instance, comma-separated")
    p.add_argument("--decode-gpus", default="1", help="GPU id per decode instance, comma-separated")
    p.add_argument("--prefill-port", type=int, default=8100, help="HTTP port of the first prefill instance")
    p.add_argument("--decode-port", type=int, default=8200, help="HTTP port of the first decode instance")
    p.add_argument(
        "--prefill-gpu-memory-utilization",
        type=float,
        default=None,
        help="GPU memory fraction of prefill instances (default: --gpu-memory-utilization, at most 0.65 "
        "with p2p_nccl GET, whose KV buffer lives outside vLLM's pool)",
    )
    p.add_argument(
        "--decode-gpu-memory-utilization",
        type=float,
        default=None,
        help="GPU memory fraction of decode instances (default: --gpu-memory-utilization, at most 0.8 "
        "with p2p_nccl, whose KV buffer lives outside vLLM's pool)",
    )
    p.add_argument("--prefill-args", default="", help="extra vLLM args for prefill instances (one string)")
    p.add_argument("--decode-args", default="", help="extra vLLM args for decode instances (one string)")
    _add_proxy_args(p)
    _add_p2p_args(p)
    _add_nixl_args(p)
    g = p.add_argument_group("example connector (--connector example, CPU default)")
    g.add_argument("--kv-storage", type=Path, default=None, help="shared KV directory (default RUN_DIR/kv)")
    return p


def _add_proxy_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("proxy")
    g.add_argument("--proxy-port", type=int, default=8000, help="HTTP port of the proxy (the endpoint)")
    g.add_argument(
        "--select",
        choices=("round_robin", "least_outstanding", "prefix"),
        default="round_robin",
        help="how the proxy picks an instance of each role (prefix: where it sent the longest prefix "
        "of the prompt, then the least outstanding)",
    )
    g.add_argument(
        "--policy",
        default="split",
        metavar="split|local|threshold:N|load[:P_TOKENS[:D_REQUESTS]]",
        help="which path each request takes (python -m proxy --help; reference/proxy_protocol.md); "
        "threshold and load count prompt tokens with the served model's tokenizer (default split)",
    )
    g.add_argument(
        "--proxy-args",
        default="",
        help="extra proxy args (python -m proxy --help), e.g. '--prefill-timeout 60', or '--retries 0' for "
        "a measured run in which a leg that failed fails its request instead of being retried",
    )


def _add_p2p_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("P2P NCCL (--connector p2p_nccl, vLLM <= 0.23)")
    g.add_argument("--prefill-kv-port", type=int, default=21001, help="NCCL/ZMQ port of the first prefill")
    g.add_argument("--decode-kv-port", type=int, default=22001, help="NCCL/ZMQ port of the first decode")
    g.add_argument("--send-type", choices=SEND_TYPES, default="GET", help="send type (must match on P and D)")
    g.add_argument("--nccl-num-channels", type=int, default=16, help="NCCL channels")
    g.add_argument("--mem-pool-size-gb", type=int, default=8, help="pinned host pool per instance (GB)")
    g.add_argument("--decode-buffer-size", default="8e9", help="decode-side GPU KV buffer (bytes)")
    g.add_argument(
        "--prefill-buffer-size",
        default=None,
        help="prefill-side KV buffer in bytes (default 3e10 with GET, where P holds each request's KV "
        "until D pulls it; 1e1 otherwise)",
    )
    g.add_argument(
        "--discovery-port",
        type=int,
        default=None,
        help="instances register with the proxy over ZMQ on this port instead of a static list",
    )


def _add_nixl_args(p: argparse.ArgumentParser) -> None:
    """Defaults None: vLLM's own (cuda, UCX, 5600, UCX's transport choice), stated in the launch plan."""
    g = p.add_argument_group("NIXL (--connector nixl, vLLM >= 0.24)")
    g.add_argument(
        "--nixl-side-channel-port",
        type=int,
        default=None,
        help="handshake (ZMQ) port of the first prefill instance (default 5600); prefill i gets PORT+i, "
        "decode i PORT+100+i, on 127.0.0.1",
    )
    g.add_argument(
        "--nixl-buffer-device",
        choices=NIXL_BUFFER_DEVICES,
        default=None,
        help="kv_buffer_device: cuda reads KV GPU to GPU (default); cpu stages it in host RAM",
    )
    g.add_argument(
        "--nixl-backends", default=None, help="NIXL transfer backends, comma-separated (default UCX)"
    )
    g.add_argument(
        "--nixl-mode",
        choices=tuple(NIXL_MODES),
        default=None,
        help="pull: D reads P's KV (NixlConnector, default); push: P writes it into D's blocks "
        "(NixlPushConnector, vLLM >= 0.26)",
    )
    g.add_argument(
        "--ucx-tls",
        default=None,
        help="UCX_TLS for every instance, e.g. cuda_ipc,cuda_copy,tcp (default: UCX's own choice)",
    )
