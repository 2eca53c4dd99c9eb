"""`testbed COMMAND [ARGS...]`: one entry point over the testbed's command lines ([project.scripts]).

Each command is an existing CLI, run with the arguments that follow it unchanged: `testbed run ...` is
`python run_experiment.py ...`, `testbed disagg ...` is `./start_disaggregated_servers.sh ...`, and so
on (COMMANDS). A command's module is imported only when it runs, so `testbed --help` is instant and
loads neither vLLM, Quart nor matplotlib.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PROG = "testbed"


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its name, the `module:function` it runs (`function(argv) -> exit status`), one
    line of help, and the command it is the same as."""

    name: str
    target: str
    summary: str
    same_as: str

    def load(self) -> Callable[[list[str]], int | None]:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)


COMMANDS: tuple[Command, ...] = (
    Command(
        "run",
        "experiments.run_cli:main",
        "drive an endpoint with a seeded workload; record latency, energy and every request",
        "python run_experiment.py",
    ),
    Command(
        "compare",
        "analysis.compare_cli:main",
        "compare runs (newest traditional vs newest disagg by default): report.md, plots, SLO frontier",
        "python compare_performance.py",
    ),
    Command(
        "disagg",
        "disagg.__main__:main",
        "start xPyD prefill and decode vLLM instances and the proxy (or --passthrough replicas)",
        "./start_disaggregated_servers.sh",
    ),
    Command(
        "traditional",
        "traditional.__main__:main",
        "start one vLLM instance, the single-instance baseline",
        "python -m traditional",
    ),
    Command(
        "stop",
        "launch.cli:stop_main",
        "stop the run a launcher started last (either launcher), or the one in RUN_DIR",
        "./start_disaggregated_servers.sh stop / python -m traditional stop",
    ),
    Command(
        "proxy",
        "proxy.cli:main",
        "serve the disaggregating proxy in front of running vLLM instances",
        "python -m proxy",
    ),
    Command(
        "monitor",
        "monitor.__main__:main",
        "sample GPU power to CSV until --duration or Ctrl-C",
        "python -m monitor",
    ),
    Command(
        "plan",
        "planner.cli:main",
        "profile an instance, simulate setups, search xPyD ratios, validate against runs",
        "python -m planner",
    ),
    Command(
        "campaign",
        "disagg.campaigns.frontier:main",
        "run every setup x shape x rate of an SLO-frontier campaign (resumable)",
        "python -m disagg.campaigns.frontier",
    ),
    Command(
        "archive",
        "experiments.archive:main",
        "compress complete runs for git (result.json.xz)",
        "python -m experiments.archive",
    ),
    Command(
        "demo",
        "demo.cli:main",
        "the CPU demo end to end and the measured 2 x H200 comparison rendered",
        "python -m demo",
    ),
)
BY_NAME = {c.name: c for c in COMMANDS}


def help_text() -> str:
    width = max(len(c.name) for c in COMMANDS)
    lines = [
        f"usage: {PROG} COMMAND [ARGS...]",
        "",
        "One entry point over the testbed's command lines; the arguments after COMMAND go to it unchanged",
        f"(`{PROG} COMMAND --help` explains them). Commands:",
        "",
    ]
    lines += [f"  {c.name:<{width}}  {c.summary}" for c in COMMANDS]
    lines += ["", "Each is the same as the command it wraps:"]
    lines += [f"  {PROG} {c.name:<{width}}  = {c.same_as}" for c in COMMANDS]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `testbed COMMAND ARGS...`; returns the command's exit status (2 for a missing or unknown one)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(help_text())
        return 0
    names = ", ".join(BY_NAME)
    if not args:
        print(f"error: name a command: {names} (see {PROG} --help)", file=sys.stderr)
        return 2
    command = BY_NAME.get(args[0])
    if command is None:
        print(
            f"error: unknown command {args[0]!r}; choose one of {names} (see {PROG} --help)", file=sys.stderr
        )
        return 2
    sys.argv = [f"{PROG} {command.name}", *args[1:]]  # the wrapped parser names itself `testbed COMMAND`
    status = command.load()(args[1:])
    return 0 if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())
