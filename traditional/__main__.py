"""`python -m traditional`: start one vLLM instance (the single-instance baseline) and supervise it.

Waits for /health with a progress line and a timeout, writes its log and pid under the run directory,
and stops cleanly on Ctrl-C (or with `python -m traditional stop [RUN_DIR]`,
default: the last one started).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from experiments.ray_cluster import ClusterError
from launch.cli import (
    add_server_args,
    default_run_dir,
    point_current,
    refuse_off_cluster,
    resolve_common,
    split_vllm_args,
    stop_command,
    write_plan,
)
from launch.server import ManagedServer, ServerSpec
from launch.supervise import run_group
from testbed.cli_errors import OneLineErrorParser

CURRENT = Path("results/runs/.current-traditional")  # the launch plan the runner finds by endpoint
PROG = "python -m traditional"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["stop"]:
        return stop_command(argv[1:], CURRENT, PROG)
    argv, extra = split_vllm_args(argv)
    p = OneLineErrorParser(prog=PROG, description=__doc__, epilog="Arguments after -- go to vLLM unchanged.")
    add_server_args(p)
    p.add_argument("--port", type=int, default=8000, help="HTTP port of the server")
    p.add_argument("--gpu", default="0", help="GPU id(s) for CUDA_VISIBLE_DEVICES (ignored on CPU)")
    args = p.parse_args(argv)
    if (refusal := refuse_off_cluster(args)) is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    try:
        gpu, model, max_len = resolve_common(args)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = (args.run_dir or default_run_dir("traditional")).resolve()
    spec = ServerSpec(
        model=model,
        port=args.port,
        name="server",
        gpu=args.gpu if gpu else None,
        max_model_len=max_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        load_format=args.load_format,
        block_size=args.kv_block_size,
        extra_args=extra,
    )
    try:
        server, launch_json = _server(args, spec, run_dir)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    version = write_plan(run_dir, launch_json)
    point_current(CURRENT, run_dir)
    where = f"GPU {spec.gpu}" if gpu else "CPU"
    print(f"starting vLLM {version or '(not installed)'} ({where}) model={model} port={args.port}")
    print(f"  run_dir={run_dir}")
    try:
        return run_group([server], run_dir, args.timeout, args.detach, f"{PROG} stop {run_dir}")
    finally:
        if args.cluster:
            from launch.ray_placement import shutdown

            shutdown()


def _server(args: Any, spec: ServerSpec, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The instance as a local process, or with --cluster as a Ray actor on a node with its GPUs; and
    the launch plan."""
    if not args.cluster:
        return ManagedServer(spec, run_dir), _plan(spec)
    from launch.ray_placement import describe, place, place_options, plan_with_placements

    gpus = 0 if spec.gpu is None else len(spec.gpu.split(","))
    (server,) = place([("serving", spec)], run_dir, place_options(args, gpus))
    print(f"placed on the Ray cluster {args.cluster}:\n{describe([server])}")
    return server, plan_with_placements(_plan(spec), [server], args.cluster)


def _plan(spec: ServerSpec) -> dict[str, Any]:
    return {"instances": [{**spec.to_dict(), "role": "serving"}], "endpoint": spec.url}


if __name__ == "__main__":
    sys.exit(main())
