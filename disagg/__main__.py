"""`python -m disagg` (or ./start_disaggregated_servers.sh): prefill and decode instances plus the proxy.

Flags: disagg/cli.py (`--help`); what they resolve to: disagg/plan.py; the connector configs:
disagg/kv_config.py; starting, supervising and stopping: launch/.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from disagg.cli import build_parser
from disagg.plan import DisaggPlan, plan, proxy_command
from experiments.ray_cluster import ClusterError
from experiments.schema import SetupForm
from launch.cli import point_current, refuse_off_cluster, split_vllm_args, stop_command, write_plan
from launch.server import ManagedServer, ServerSpec
from launch.supervise import run_group

CURRENT = Path("results/runs/.current-disagg")  # the run dir `stop` uses when given none
PROG = "./start_disaggregated_servers.sh"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["stop"]:
        return stop_command(argv[1:], CURRENT, PROG)
    argv, extra = split_vllm_args(argv)
    args = build_parser().parse_args(argv)
    if (refusal := refuse_off_cluster(args)) is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    try:
        run = plan(args, extra)
        instances, launch_json = _instances(args, run)
    except (ValueError, ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    version = write_plan(run.run_dir, launch_json)
    point_current(CURRENT, run.run_dir)
    proxy = ManagedServer(
        ServerSpec(model="-", port=args.proxy_port, name="proxy", command_override=run.proxy), run.run_dir
    )
    where = "CPU" if run.prefill[0].gpu is None else f"GPUs P={args.prefill_gpus} D={args.decode_gpus}"
    form = SetupForm(len(run.prefill), len(run.decode))
    print(
        f"starting {form} ({where}) vLLM {version or '(not installed)'} "
        f"connector={run.connector} {run.connector_options or ''}\n  run_dir={run.run_dir}"
    )
    hint = f"{PROG} stop {run.run_dir}"
    try:
        return run_group([*instances, proxy], run.run_dir, args.timeout, args.detach, hint)
    finally:
        if args.cluster:
            from launch.ray_placement import shutdown

            shutdown()


def _instances(args: Any, run: DisaggPlan) -> tuple[list[Any], dict[str, Any]]:
    """The instances as local processes, or with --cluster as Ray actors on the cluster's nodes (the
    proxy command then names where they landed); and the launch plan."""
    if not args.cluster:
        return [ManagedServer(s, run.run_dir) for s in (*run.prefill, *run.decode)], run.launch_json()
    from launch.ray_placement import describe, place, place_options, plan_with_placements

    gpus = 0 if run.prefill[0].gpu is None else 1
    roles = [("prefill", s) for s in run.prefill] + [("decode", s) for s in run.decode]
    servers = place(roles, run.run_dir, place_options(args, gpus))
    print(f"placed on the Ray cluster {args.cluster}:\n{describe(servers)}")
    run.proxy = proxy_command(
        args, run.connector, {"prefill": run.prefill, "decode": run.decode}, run.run_dir
    )
    return servers, plan_with_placements(run.launch_json(), servers, args.cluster)


if __name__ == "__main__":
    sys.exit(main())
