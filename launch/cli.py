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
from launch.server import has_nvidia_gpu
from launch.supervise import stop_run_dir

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


def resolve_common(args: argparse.Namespace) -> tuple[bool, str, int]:
    """(GPU path?, model path, context length) from the shared flags and the machine."""
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
    """`PROG stop [RUN_DIR]`: stop the run in RUN_DIR (default: the one `pointer` names). Exit 0 or 2."""
    if len(argv) > 1:
        print(f"usage: {prog} stop [RUN_DIR]", file=sys.stderr)
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
    print("stopped: " + (", ".join(stop_run_dir(target)) or "nothing (no pid files left)"))
    return 0


def split_vllm_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Our flags, and the arguments after `--` that go to every vLLM instance unchanged."""
    if "--" not in argv:
        return argv, []
    i = argv.index("--")
    return argv[:i], argv[i + 1 :]
