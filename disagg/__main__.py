"""`python -m disagg` (or ./start_disaggregated_servers.sh): prefill and decode instances plus the proxy.

Starts X prefill instances (default GPU 0) and Y decode instances (default GPU 1) with the KV connector
(P2P NCCL on vLLM <= 0.23, NIXL after, the shared-storage example connector on CPU), then the proxy;
waits for every /health with a progress line and a timeout; writes logs, pids and the launch plan to
the run directory; stops everything on Ctrl-C or with `python -m disagg stop [RUN_DIR]`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from disagg.kv_config import CONNECTORS, SEND_TYPES, P2pNcclOptions, auto_connector, kv_transfer_config
from experiments.cli_errors import OneLineErrorParser
from experiments.provenance import vllm_version
from launch.cli import (
    add_server_args,
    default_run_dir,
    point_current,
    resolve_common,
    stop_command,
    write_plan,
)
from launch.server import ManagedServer, ServerSpec
from launch.supervise import run_group

CURRENT = Path("results/runs/.current-disagg")  # the run dir `stop` uses when given none
PROG = "python -m disagg"


def _ids(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(
        prog="start_disaggregated_servers.sh",
        description=__doc__,
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
        "--prefill-kv-port", type=int, default=21001, help="P2P NCCL/ZMQ port of the first prefill"
    )
    p.add_argument("--decode-kv-port", type=int, default=22001, help="P2P NCCL/ZMQ port of the first decode")
    p.add_argument("--proxy-port", type=int, default=8000, help="HTTP port of the proxy (the endpoint)")
    p.add_argument(
        "--send-type",
        choices=SEND_TYPES,
        default="GET",
        help="P2P NCCL send type (must match on P and D)",
    )
    p.add_argument("--nccl-num-channels", type=int, default=16, help="P2P NCCL channels")
    p.add_argument("--mem-pool-size-gb", type=int, default=8, help="P2P NCCL pinned host pool per instance")
    p.add_argument("--decode-buffer-size", default="8e9", help="P2P NCCL decode-side KV buffer (bytes)")
    p.add_argument(
        "--prefill-buffer-size",
        default=None,
        help="P2P NCCL prefill-side KV buffer in bytes (default 3e10 with GET, where P holds each "
        "request's KV until D pulls it; 1e1 otherwise)",
    )
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
    p.add_argument(
        "--discovery-port",
        type=int,
        default=None,
        help="P2P NCCL: instances register with the proxy over ZMQ on this port instead of a static list",
    )
    p.add_argument(
        "--kv-storage",
        type=Path,
        default=None,
        help="example connector: shared KV directory (default RUN_DIR/kv)",
    )
    p.add_argument("--prefill-args", default="", help="extra vLLM args for prefill instances (one string)")
    p.add_argument("--decode-args", default="", help="extra vLLM args for decode instances (one string)")
    p.add_argument("--proxy-args", default="", help="extra proxy args, e.g. '--prefill-timeout 60'")
    p.add_argument(
        "--select",
        choices=("round_robin", "least_outstanding"),
        default="round_robin",
        help="how the proxy picks an instance of each role",
    )
    return p


def memory_fraction(args: argparse.Namespace, connector: str, role: str) -> float:
    """P2P NCCL keeps KV in GPU buffers outside vLLM's pool (D always, P with GET): leave room for them."""
    explicit = getattr(args, f"{role}_gpu_memory_utilization")
    if explicit is not None:
        return float(explicit)
    if connector == "p2p_nccl":
        if role == "decode":
            return min(args.gpu_memory_utilization, 0.8)
        if args.send_type == "GET":
            return min(args.gpu_memory_utilization, 0.65)
    return float(args.gpu_memory_utilization)


def plan(
    args: argparse.Namespace, extra: list[str]
) -> tuple[list[ServerSpec], list[ServerSpec], list[str], Path]:
    """The instance specs and the proxy command, without starting anything."""
    gpu, model, max_len = resolve_common(args)
    connector = args.connector if args.connector != "auto" else auto_connector(vllm_version(), gpu)
    if args.passthrough:
        connector = "passthrough"
    run_dir = (args.run_dir or default_run_dir("disagg")).resolve()
    p_gpus, d_gpus = _ids(args.prefill_gpus), _ids(args.decode_gpus)
    if gpu and (len(p_gpus) < args.num_prefill or len(d_gpus) < args.num_decode):
        raise ValueError(
            f"give one GPU per instance: --prefill-gpus needs {args.num_prefill} ids, "
            f"--decode-gpus {args.num_decode}"
        )
    if min(args.num_prefill, args.num_decode) < 1:
        raise ValueError("xPyD needs at least one prefill and one decode instance")
    p2p = P2pNcclOptions(
        args.send_type,
        args.nccl_num_channels,
        args.mem_pool_size_gb,
        args.prefill_buffer_size or ("3e10" if args.send_type == "GET" else "1e1"),
        args.decode_buffer_size,
    )
    storage = str((args.kv_storage or run_dir / "kv").resolve())
    specs: dict[str, list[ServerSpec]] = {"prefill": [], "decode": []}
    for role, count, gpus, port, kv_port, role_args in (
        ("prefill", args.num_prefill, p_gpus, args.prefill_port, args.prefill_kv_port, args.prefill_args),
        ("decode", args.num_decode, d_gpus, args.decode_port, args.decode_kv_port, args.decode_args),
    ):
        for i in range(count):
            discovery = ("127.0.0.1", args.discovery_port, port + i) if args.discovery_port else None
            kv = None
            if connector != "passthrough":
                kv = kv_transfer_config(
                    connector, role, kv_port=kv_port + i, p2p=p2p, storage_path=storage, discovery=discovery
                )
            env = {"VLLM_HOST_IP": "127.0.0.1"}
            if connector == "nixl":
                env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(5600 + (i if role == "prefill" else 100 + i))
            mem = memory_fraction(args, connector, role)
            specs[role].append(
                ServerSpec(
                    model=model,
                    port=port + i,
                    name=f"{role}{i}" if kv else f"instance{len(specs['prefill']) + len(specs['decode'])}",
                    gpu=gpus[i] if gpu else None,
                    max_model_len=max_len,
                    gpu_memory_utilization=mem,
                    load_format=args.load_format,
                    kv_transfer_config=kv,
                    env=env,
                    extra_args=[*extra, *shlex.split(role_args)],
                )
            )

    def backends(role: str) -> str:
        return ",".join(
            s.url
            + (f"@127.0.0.1:{(s.kv_transfer_config or {}).get('kv_port')}" if connector == "p2p_nccl" else "")
            for s in specs[role]
        )

    proxy_cmd = [
        sys.executable,
        "-m",
        "proxy",
        "--connector",
        connector,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.proxy_port),
        "--select",
        args.select,
        "--stage-log",
        str(run_dir / "proxy_stages.jsonl"),
    ]
    if connector == "passthrough":
        proxy_cmd += ["--backend", ",".join(s.url for s in (*specs["prefill"], *specs["decode"]))]
    elif args.discovery_port:
        proxy_cmd += ["--discovery-port", str(args.discovery_port)]
    else:
        proxy_cmd += ["--prefill", backends("prefill"), "--decode", backends("decode")]
    proxy_cmd += shlex.split(args.proxy_args)
    return specs["prefill"], specs["decode"], proxy_cmd, run_dir


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["stop"]:
        return stop_command(argv[1:], CURRENT, PROG)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    try:
        prefill, decode, proxy_cmd, run_dir = plan(args, extra)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    connector = proxy_cmd[proxy_cmd.index("--connector") + 1]
    kv = next((s.kv_transfer_config for s in prefill if s.kv_transfer_config), None) or {}
    write_plan(
        run_dir,
        {
            "prefill": [{**s.to_dict(), "role": "prefill"} for s in prefill],
            "decode": [{**s.to_dict(), "role": "decode"} for s in decode],
            "proxy": proxy_cmd,
            "connector": connector,
            "connector_options": kv.get("kv_connector_extra_config"),
            "endpoint": f"http://127.0.0.1:{args.proxy_port}",
        },
    )
    point_current(CURRENT, run_dir)
    instances = [ManagedServer(s, run_dir) for s in (*prefill, *decode)]
    proxy = ManagedServer(
        ServerSpec(model="-", port=args.proxy_port, name="proxy", command_override=proxy_cmd), run_dir
    )
    where = "CPU" if prefill[0].gpu is None else f"GPUs P={args.prefill_gpus} D={args.decode_gpus}"
    print(f"starting {len(prefill)}P{len(decode)}D ({where}) connector={connector} run_dir={run_dir}")
    return run_group([*instances, proxy], run_dir, args.timeout, args.detach, f"{PROG} stop {run_dir}")


if __name__ == "__main__":
    sys.exit(main())
