"""`python -m disagg` (or ./start_disaggregated_servers.sh): prefill and decode instances plus the proxy.

Flags: disagg/cli.py (`--help`); what they resolve to: disagg/plan.py; the connector configs:
disagg/kv_config.py; starting, supervising and stopping: launch/.
"""

from __future__ import annotations

import sys
from pathlib import Path

from disagg.cli import build_parser
from disagg.plan import plan
from launch.cli import point_current, split_vllm_args, stop_command, write_plan
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
    try:
        run = plan(args, extra)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    version = write_plan(run.run_dir, run.launch_json())
    point_current(CURRENT, run.run_dir)
    instances = [ManagedServer(s, run.run_dir) for s in (*run.prefill, *run.decode)]
    proxy = ManagedServer(
        ServerSpec(model="-", port=args.proxy_port, name="proxy", command_override=run.proxy), run.run_dir
    )
    where = "CPU" if run.prefill[0].gpu is None else f"GPUs P={args.prefill_gpus} D={args.decode_gpus}"
    print(
        f"starting {len(run.prefill)}P{len(run.decode)}D ({where}) vLLM {version or '(not installed)'} "
        f"connector={run.connector} {run.connector_options or ''}\n  run_dir={run.run_dir}"
    )
    hint = f"{PROG} stop {run.run_dir}"
    return run_group([*instances, proxy], run.run_dir, args.timeout, args.detach, hint)


if __name__ == "__main__":
    sys.exit(main())
