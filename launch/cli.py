"""Flags and launch plan shared by `python -m traditional` and `python -m disagg`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from experiments.model_dir import SHAPES, resolve_model
from experiments.provenance import vllm_version
from experiments.serving_setup import POINTERS
from launch.server import has_nvidia_gpu
from launch.supervise import STOP_GRACE_S, stop_run_dir, wait_exit

PLAN_FILE = "launch.json"  # read back by experiments/serving_setup.py


def default_run_dir(kind: str) -> Path:
    return Path("results/runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}"


def add_server_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by the single-instance and the disaggregated launchers."""
    p.add_argument(
        "--model",
        default=None,
        help="model path, or a shape to write as a config-only model with dummy weights: "
        f"{', '.join(SHAPES)} (default: tiny on CPU, llama-3.1-8b on GPU)",
    )
    p.add_argument(
        "--max-model-len", type=int, default=None, help="context length (default 2048 CPU, 4096 GPU)"
    )
    p.add_argument(
        "--gpu-memory-utilization", type=float, default=0.9, help="fraction of GPU memory vLLM takes"
    )
    p.add_argument(
        "--load-format", default=None, help="vLLM --load-format (default: dummy for config-only models)"
    )
    p.add_argument(
        "--kv-block-size",
        type=int,
        default=None,
        help="vLLM --block-size (tokens per KV-cache block) for every instance (default: vLLM's)",
    )
    p.add_argument("--cpu", action="store_true", help="use the CPU build even if a GPU is present")
    p.add_argument("--run-dir", type=Path, default=None, help="where logs and pid files go")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for /health")
    p.add_argument("--detach", action="store_true", help="exit once healthy, leaving the server(s) running")
    _add_cluster_args(p)


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    """Past one host (the `cluster` extra, Ray): without --cluster none of these apply and Ray is not
    imported."""
    g = p.add_argument_group("cluster (--cluster, pip install -e '.[cluster]')")
    g.add_argument(
        "--cluster",
        default=None,
        metavar="auto|local|HOST:PORT|ray://HOST:PORT",
        help="place every vLLM instance as a Ray actor holding its GPUs on whichever node has them: auto "
        "= RAY_ADDRESS or the `ray start` cluster here, local = a one-node Ray started here; the proxy "
        "stays here (see reference/cluster.md)",
    )
    g.add_argument(
        "--ray-node-resource",
        action="append",
        default=[],
        metavar="ROLE=NAME",
        help="put ROLE's instances (prefill, decode, serving) on nodes holding the custom resource NAME "
        "(`ray start --resources '{\"NAME\": 1}'`); repeatable",
    )
    g.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs each instance's actor holds (default 1)")
    g.add_argument(
        "--ucx-net-devices", default=None, help="UCX_NET_DEVICES for every instance (NIXL's interface)"
    )
    g.add_argument(
        "--nccl-socket-ifname", default=None, help="NCCL_SOCKET_IFNAME for every instance (P2P NCCL's)"
    )


def refuse_off_cluster(args: argparse.Namespace) -> str | None:
    """Why these flags cannot run (None: they can): cluster flags without --cluster, and what --cluster
    cannot do."""
    flags = {
        "--ucx-net-devices": args.ucx_net_devices,
        "--nccl-socket-ifname": args.nccl_socket_ifname,
        "--ray-node-resource": args.ray_node_resource,
    }
    given = [flag for flag, value in flags.items() if value]
    if not args.cluster:
        return f"{', '.join(given)} apply with --cluster only" if given else None
    if args.detach:
        return (
            "--detach does not apply with --cluster: the launcher is the Ray driver that owns the "
            "instances; keep it in the foreground and run the runner from another shell"
        )
    if getattr(args, "discovery_port", None):
        return (
            "--discovery-port does not apply with --cluster: instances would register with a proxy on "
            "127.0.0.1 of their own node; leave it out (the proxy gets the placed instances' addresses)"
        )
    return None


def resolve_common(args: argparse.Namespace) -> tuple[bool, str, int]:
    """(GPU path?, model path, context length) from the shared flags and the machine (with --cluster:
    the cluster's nodes)."""
    if getattr(args, "cluster", None):
        from launch.ray_placement import cluster_has_gpus

        gpu = not args.cpu and cluster_has_gpus(args.cluster)
    else:
        gpu = has_nvidia_gpu() and not args.cpu
    model = resolve_model(args.model or ("llama-3.1-8b" if gpu else "tiny"))
    max_len = args.max_model_len or (4096 if gpu else 2048)
    return gpu, model, max_len


def write_plan(run_dir: Path, plan: dict[str, Any]) -> str | None:
    """launch.json: what was started (and on which vLLM), read back by the runner into every result's
    serving setup. Returns the vLLM version it recorded (None: not installed here)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    version = vllm_version()
    (run_dir / PLAN_FILE).write_text(json.dumps({**plan, "vllm_version": version}, indent=2))
    return version


def point_current(pointer: Path, run_dir: Path) -> None:
    """Record `run_dir` as the launcher's current run (what `stop` without RUN_DIR and the runner find)."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(run_dir.resolve()))


def stop_command(argv: list[str], pointer: Path, prog: str) -> int:
    """`PROG stop [RUN_DIR]`: stop the run in RUN_DIR (default: the one `pointer` names). Exit 0, or 2 on
    a bad RUN_DIR, or 1 when a --cluster launcher outlives the request."""
    if argv in (["-h"], ["--help"]):
        print(f"usage: {prog} stop [RUN_DIR]: stop the run in RUN_DIR (default: the last one started)")
        return 0
    if len(argv) > 1:
        print(
            f"error: stop takes at most one RUN_DIR, got {len(argv)}; use: {prog} stop [RUN_DIR]",
            file=sys.stderr,
        )
        return 2
    target = argv[0] if argv else (pointer.read_text().strip() if pointer.exists() else "")
    if not target:
        print(
            f"error: no run directory given and none recorded in {pointer}; use: {prog} stop RUN_DIR",
            file=sys.stderr,
        )
        return 2
    if not Path(target).is_dir():
        print(f"error: no run directory {target}; the launcher prints its run_dir at start", file=sys.stderr)
        return 2
    stopped = stop_run_dir(target)
    driver = _cluster_driver(Path(target))
    if driver is not None:  # --cluster: the launcher stops its instances through Ray on the request
        if not wait_exit(driver, STOP_GRACE_S * 3):
            print(
                f"error: the cluster launcher (pid {driver}) is still running {STOP_GRACE_S * 3:.0f} s after "
                "the stop request; press Ctrl-C in its shell (it stops its instances through Ray)",
                file=sys.stderr,
            )
            return 1
        stopped.append(f"the cluster launcher (pid {driver})")
    print("stopped: " + (", ".join(stopped) or "nothing (no pid files left)"))
    return 0


def stop_main(argv: list[str]) -> int:
    """`testbed stop [RUN_DIR]`: stop_command over both launchers; without RUN_DIR, the run whose
    current-run pointer (experiments.serving_setup.POINTERS) was written last."""
    written = [p for p in POINTERS if p.exists()]
    pointer = max(written, key=lambda p: p.stat().st_mtime_ns) if written else POINTERS[0]
    return stop_command(argv, pointer, "testbed")


def _cluster_driver(run_dir: Path) -> int | None:
    """The pid of a --cluster launcher (the Ray driver) of `run_dir`, from its launch plan."""
    try:
        cluster = json.loads((run_dir / PLAN_FILE).read_text()).get("cluster") or {}
    except (OSError, ValueError):
        return None
    pid = cluster.get("driver_pid")
    return pid if isinstance(pid, int) else None


def split_vllm_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Our flags, and the arguments after `--` that go to every vLLM instance unchanged."""
    if "--" not in argv:
        return argv, []
    i = argv.index("--")
    return argv[:i], argv[i + 1 :]
