"""What the disaggregated launcher will start, worked out from its flags without starting anything.

`plan(args, extra)` gives the prefill and decode instance specs (KV-transfer config and environment per
connector), the proxy command and the launch plan that goes to RUN_DIR/launch.json.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from disagg.kv_config import (
    LOOPBACK,
    NixlOptions,
    P2pNcclOptions,
    auto_connector,
    connector_options,
    instance_env,
    kv_transfer_config,
)
from experiments.model_dir import serving_tokenizer
from experiments.provenance import vllm_version
from launch.cli import default_run_dir, resolve_common
from launch.server import ServerSpec
from testbed.route_rule import SPLIT, check_route_connector, parse_route_policy

ROLES = ("prefill", "decode")


@dataclass
class DisaggPlan:
    """The instances, the proxy and the connector of one disaggregated (or pass-through) run."""

    prefill: list[ServerSpec]
    decode: list[ServerSpec]
    proxy: list[str]  # the proxy's command line
    run_dir: Path
    connector: str  # p2p_nccl, nixl, example or passthrough
    connector_options: dict[str, Any] | None
    endpoint: str

    def launch_json(self) -> dict[str, Any]:
        """launch.json as experiments/serving_setup.py reads it (write_plan adds vllm_version)."""
        return {
            "prefill": [{**s.to_dict(), "role": "prefill"} for s in self.prefill],
            "decode": [{**s.to_dict(), "role": "decode"} for s in self.decode],
            "proxy": self.proxy,
            "connector": self.connector,
            "connector_options": self.connector_options,
            "endpoint": self.endpoint,
        }


def _ids(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


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


def p2p_options(args: argparse.Namespace) -> P2pNcclOptions:
    return P2pNcclOptions(
        args.send_type,
        args.nccl_num_channels,
        args.mem_pool_size_gb,
        args.prefill_buffer_size or ("3e10" if args.send_type == "GET" else "1e1"),
        args.decode_buffer_size,
    )


def nixl_options(args: argparse.Namespace, connector: str) -> NixlOptions:
    """The NIXL flags as options; refused with another connector, where they would do nothing."""
    flags = {  # field: (flag, value)
        "side_channel_port": ("--nixl-side-channel-port", args.nixl_side_channel_port),
        "buffer_device": ("--nixl-buffer-device", args.nixl_buffer_device),
        "backends": ("--nixl-backends", tuple(_ids(args.nixl_backends)) if args.nixl_backends else None),
        "ucx_tls": ("--ucx-tls", args.ucx_tls),
        "mode": ("--nixl-mode", args.nixl_mode),
    }
    given = {field: value for field, (_, value) in flags.items() if value is not None}
    if given and connector != "nixl":
        names = ", ".join(flags[field][0] for field in given)
        raise ValueError(f"{names} apply to --connector nixl only (this run uses {connector})")
    return NixlOptions(**given)


def plan(args: argparse.Namespace, extra: list[str]) -> DisaggPlan:
    """The instance specs, the proxy command and the connector options, without starting anything."""
    gpu, model, max_len = resolve_common(args)
    connector = args.connector if args.connector != "auto" else auto_connector(vllm_version(), gpu)
    if args.passthrough:
        connector = "passthrough"
    run_dir = (args.run_dir or default_run_dir("disagg")).resolve()
    p_gpus, d_gpus = _ids(args.prefill_gpus), _ids(args.decode_gpus)
    placed = bool(getattr(args, "cluster", None))  # Ray gives each instance its GPUs
    if gpu and not placed and (len(p_gpus) < args.num_prefill or len(d_gpus) < args.num_decode):
        raise ValueError(
            f"give one GPU per instance: --prefill-gpus needs {args.num_prefill} ids, "
            f"--decode-gpus {args.num_decode}"
        )
    if min(args.num_prefill, args.num_decode) < 1:
        raise ValueError("xPyD needs at least one prefill and one decode instance")
    p2p, nixl = p2p_options(args), nixl_options(args, connector)
    storage = str((args.kv_storage or run_dir / "kv").resolve())
    specs: dict[str, list[ServerSpec]] = {"prefill": [], "decode": []}
    for role, count, gpus, port, kv_port, role_args in (
        ("prefill", args.num_prefill, p_gpus, args.prefill_port, args.prefill_kv_port, args.prefill_args),
        ("decode", args.num_decode, d_gpus, args.decode_port, args.decode_kv_port, args.decode_args),
    ):
        for i in range(count):
            discovery = (LOOPBACK, args.discovery_port, port + i) if args.discovery_port else None
            kv = None
            if connector != "passthrough":
                kv = kv_transfer_config(
                    connector,
                    role,
                    kv_port=kv_port + i,
                    p2p=p2p,
                    nixl=nixl,
                    storage_path=storage,
                    discovery=discovery,
                )
            specs[role].append(
                ServerSpec(
                    model=model,
                    port=port + i,
                    name=f"{role}{i}" if kv else f"instance{len(specs['prefill']) + len(specs['decode'])}",
                    gpu=gpus[i] if gpu else None,
                    max_model_len=max_len,
                    gpu_memory_utilization=memory_fraction(args, connector, role),
                    load_format=args.load_format,
                    block_size=args.kv_block_size,
                    kv_transfer_config=kv,
                    env=instance_env(connector, role, i, nixl),
                    extra_args=[*extra, *shlex.split(role_args)],
                )
            )
    _check_ports(specs, args, connector)
    return DisaggPlan(
        prefill=specs["prefill"],
        decode=specs["decode"],
        proxy=proxy_command(args, connector, specs, run_dir),
        run_dir=run_dir,
        connector=connector,
        connector_options=connector_options(connector, p2p=p2p, nixl=nixl, storage_path=storage),
        endpoint=f"http://{LOOPBACK}:{args.proxy_port}",
    )


def proxy_command(
    args: argparse.Namespace, connector: str, specs: dict[str, list[ServerSpec]], run_dir: Path
) -> list[str]:
    def backends(role: str) -> str:
        """P2P NCCL backends carry their KV address: URL@ip:kv_port."""
        return ",".join(
            s.url + (f"@{s.host}:{s.kv_transfer_config['kv_port']}" if connector == "p2p_nccl" else "")
            for s in specs[role]
            if s.kv_transfer_config is not None
        )

    cmd = [sys.executable, "-m", "proxy", "--connector", connector, "--host", LOOPBACK]
    cmd += ["--port", str(args.proxy_port), "--select", args.select]
    cmd += ["--stage-log", str(run_dir / "proxy_stages.jsonl")]
    policy = args.policy.strip()
    rule = parse_route_policy(policy)  # a bad --policy is a one-line error before any instance starts
    check_route_connector(rule, connector)
    if rule.kind != SPLIT:
        cmd += ["--policy", policy]
        if rule.needs_tokens:
            cmd += ["--tokenizer", serving_tokenizer(specs["decode"][0].model)]
    if connector == "passthrough":
        cmd += ["--backend", ",".join(s.url for s in (*specs["prefill"], *specs["decode"]))]
    elif args.discovery_port:
        cmd += ["--discovery-port", str(args.discovery_port)]
    else:
        cmd += ["--prefill", backends("prefill"), "--decode", backends("decode")]
    return cmd + shlex.split(args.proxy_args)


def _check_ports(specs: dict[str, list[ServerSpec]], args: argparse.Namespace, connector: str) -> None:
    """Every port the run binds on loopback (HTTP, P2P NCCL, NIXL side channel) is bound once."""
    used: list[tuple[str, int]] = [("proxy", args.proxy_port)]
    for role in ROLES:
        for s in specs[role]:
            used.append((f"{s.name} HTTP", s.port))
            if connector == "p2p_nccl" and s.kv_transfer_config:
                used.append((f"{s.name} P2P NCCL", int(s.kv_transfer_config["kv_port"])))
            if "VLLM_NIXL_SIDE_CHANNEL_PORT" in s.env:
                used.append((f"{s.name} NIXL side channel", int(s.env["VLLM_NIXL_SIDE_CHANNEL_PORT"])))
    if args.discovery_port:
        used.append(("discovery", args.discovery_port))
    twice = [port for port, n in Counter(p for _, p in used).items() if n > 1]
    if twice:
        who = "; ".join(f"{port}: " + ", ".join(name for name, p in used if p == port) for port in twice)
        raise ValueError(f"port used twice ({who}); move the first port of one role with its flag")
