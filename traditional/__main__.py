"""`python -m traditional`: start one vLLM instance (the single-instance baseline) and supervise it.

Waits for /health with a progress line and a timeout, writes its log and pid under the run directory,
and stops cleanly on Ctrl-C (or with `python -m traditional stop RUN_DIR`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from experiments.cli_errors import OneLineErrorParser
from experiments.model_dir import resolve_model
from experiments.provenance import vllm_version
from traditional.server import (
    ManagedServer,
    ServerError,
    ServerSpec,
    has_nvidia_gpu,
    stop_run_dir,
    wait_all_healthy,
)

CURRENT = Path("results/runs/.current-traditional")  # the launch plan the runner finds by endpoint


def default_run_dir(kind: str) -> Path:
    return Path("results/runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}"


def add_server_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by the single-instance and the disaggregated launchers."""
    p.add_argument(
        "--model",
        default=None,
        help="model path, or a shape to write as a config-only model with dummy weights: "
        "'tiny' (CPU default) or 'llama-3.1-8b' (GPU default)",
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
    p.add_argument("--cpu", action="store_true", help="use the CPU build even if a GPU is present")
    p.add_argument("--run-dir", type=Path, default=None, help="where logs and pid files go")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for /health")
    p.add_argument("--detach", action="store_true", help="exit once healthy, leaving the server(s) running")


def resolve_common(args: argparse.Namespace) -> tuple[bool, str, int]:
    gpu = has_nvidia_gpu() and not args.cpu
    model = resolve_model(args.model or ("llama-3.1-8b" if gpu else "tiny"))
    max_len = args.max_model_len or (4096 if gpu else 2048)
    return gpu, model, max_len


def write_plan(run_dir: Path, plan: dict) -> None:
    """launch.json: what was started, read back by the runner into every result's serving setup."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "launch.json").write_text(json.dumps({**plan, "vllm_version": vllm_version()}, indent=2))


def supervise(servers: list[ManagedServer], timeout: float, detach: bool, stop_hint: str) -> int:
    """Start-up wait, then hold the foreground until Ctrl-C (or return at once with --detach)."""
    try:
        wait_all_healthy(servers, timeout)
        for s in servers:
            print(f"{s.spec.name}: {s.spec.url} (log {s.log_path})")
        if detach:
            print(f"running; stop with: {stop_hint}")
            return 0
        print("Ctrl-C stops everything")
        while all(s.alive() for s in servers):
            time.sleep(1.0)
        dead = [s for s in servers if not s.alive()]
        print(f"error: {dead[0].spec.name} exited; see {dead[0].log_path}", file=sys.stderr)
        return 1
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
        return 130
    finally:
        if not detach:
            for s in servers:
                s.stop()


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["stop"]:
        if len(argv) != 2:
            print("usage: python -m traditional stop RUN_DIR", file=sys.stderr)
            return 2
        print("stopped: " + (", ".join(stop_run_dir(argv[1])) or "nothing"))
        return 0
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = OneLineErrorParser(
        prog="python -m traditional", description=__doc__, epilog="Arguments after -- go to vLLM unchanged."
    )
    add_server_args(p)
    p.add_argument("--port", type=int, default=8000, help="HTTP port of the server")
    p.add_argument("--gpu", default="0", help="GPU id(s) for CUDA_VISIBLE_DEVICES (ignored on CPU)")
    args = p.parse_args(argv)
    gpu, model, max_len = resolve_common(args)
    run_dir = args.run_dir or default_run_dir("traditional")
    spec = ServerSpec(
        model=model,
        port=args.port,
        name="server",
        gpu=args.gpu if gpu else None,
        max_model_len=max_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        load_format=args.load_format,
        extra_args=extra,
    )
    server = ManagedServer(spec, run_dir)
    write_plan(run_dir, {"instances": [{**spec.to_dict(), "role": "serving"}], "endpoint": spec.url})
    CURRENT.parent.mkdir(parents=True, exist_ok=True)
    CURRENT.write_text(str(Path(run_dir).resolve()))
    where = f"GPU {args.gpu}" if gpu else "CPU"
    print(f"starting vLLM ({where}) model={model} port={args.port} run_dir={run_dir}")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.start()
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return supervise([server], args.timeout, args.detach, f"python -m traditional stop {run_dir}")


if __name__ == "__main__":
    sys.exit(main())
