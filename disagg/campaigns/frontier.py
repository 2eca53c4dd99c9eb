"""The frontier campaign: every setup x workload shape x rate, resumable, within a time budget.

    python -m disagg.campaigns.frontier --setups replicas,single,pd --shapes prefill-heavy \\
        --results results/h200x2/frontier --budget-s 560

Each setup is started once (with the launchers' defaults) and kept up across its shapes and rates; each
point is one `run_experiment.py` run into RESULTS/<shape>/<setup>/. A point whose complete result is
already there is skipped, so a campaign cut by its budget resumes where it stopped. A point is only
started when its estimated time fits in what is left of the budget. The same rate of the same shape
gets the same seed in every setup (same prompts and arrival times); every server sees each prompt once.
Read-only on the GPUs: nothing here changes clocks, power limits or persistence.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from experiments.schema import (
    CAMPAIGN_SETUPS,
    CampaignSetup,
    RunResult,
    VocabularyError,
    parse_campaign_setups,
)
from experiments.shapes import SHAPES, Shape
from testbed.cli_errors import OneLineErrorParser


@dataclass(frozen=True)
class Setup:
    """How the campaign launches, drives and stops one of the vocabulary's campaign setups."""

    name: str
    launcher: tuple[str, ...]  # python -m ... arguments; --run-dir/--model/--detach are added
    stop: str  # python -m <stop> stop RUN_DIR
    endpoint: str
    mode: str
    gpu_roles: str
    server_metrics: str


P, D, PROXY = "http://127.0.0.1:8100", "http://127.0.0.1:8200", "http://127.0.0.1:8000"


def recipe(setup: CampaignSetup) -> Setup:
    """One instance on GPU 0 at P's port (GPU 1 idle), or the P/D launcher's two instances behind the
    proxy: split by the setup's connector (disagg), or as replicas (passthrough)."""
    roles = ",".join(setup.gpu_roles)
    if setup.kind == "single":
        launcher = ("traditional", "--gpu", "0", "--port", "8100")
        return Setup(setup.name, launcher, "traditional", P, setup.mode, roles, P)
    launcher = ("disagg", "--passthrough") if setup.kind == "replicas" else ("disagg",)
    launcher += ("--connector", setup.connector) if setup.connector else ()
    return Setup(setup.name, launcher, "disagg", PROXY, setup.mode, roles, f"{P},{D}")


SETUPS = {name: recipe(setup) for name, setup in CAMPAIGN_SETUPS.items()}
LAUNCH_EST_S = 150.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def point_estimate_s(shape: Shape, rate: float, n: int) -> float:
    """Arrivals + the last requests' drain + idle baseline, warm-up and start-up of the runner."""
    return shape.requests(rate, n) / rate + shape.drain_s + 15.0


def healthy(endpoint: str) -> bool:
    """The endpoint answers /v1/models (a setup left up by an earlier call)."""
    try:
        with urllib.request.urlopen(endpoint + "/v1/models", timeout=5.0) as resp:
            return resp.status == 200
    except OSError:
        return False


def done(out_dir: Path, rate: float) -> bool:
    """A complete result (result.json or its archive) for this rate is already in out_dir."""
    for run_dir in out_dir.glob(f"*-rate{rate:g}"):
        try:
            if RunResult.load(run_dir).complete:
                return True
        except (OSError, ValueError):
            continue
    return False


class Campaign:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.results = Path(args.results)
        self.runs = Path(args.launch_dir)

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.t0)

    def todo(self, setup: Setup, shapes: list[Shape]) -> list[tuple[Shape, float]]:
        return [
            (s, r)
            for s in shapes
            for r in (self.args.rates or s.rates)
            if not done(self.results / s.name / setup.name, r)
        ]

    def up(self, setup: Setup) -> bool:
        """With --keep-up: the setup an earlier call left running answers (it is reused, not launched)."""
        left_up = (self.runs / setup.name / "launch.json").exists()
        return bool(self.args.keep_up and left_up and healthy(setup.endpoint))

    def launch(self, setup: Setup, up: bool) -> Path | None:
        """Start the setup, or reuse it when `up` (Campaign.up, asked once by the caller)."""
        run_dir = self.runs / setup.name
        if up:
            log(f"{setup.name} is already up (--keep-up): {run_dir}")
            return run_dir
        cmd = [sys.executable, "-m", *setup.launcher, "--detach", "--model", self.args.model]
        cmd += ["--run-dir", str(run_dir), "--timeout", str(self.args.launch_timeout)]
        cmd += shlex.split(self.args.launch_args)
        log(f"start {setup.name}: {' '.join(cmd[2:])}")
        t = time.monotonic()
        if subprocess.run(cmd).returncode != 0:
            log(f"{setup.name} failed to start; logs in {run_dir}")
            return None
        log(f"{setup.name} healthy after {time.monotonic() - t:.0f} s")
        return run_dir

    def stop(self, setup: Setup, run_dir: Path) -> None:
        subprocess.run([sys.executable, "-m", setup.stop, "stop", str(run_dir)], capture_output=True)
        time.sleep(3)

    def point(self, setup: Setup, run_dir: Path, shape: Shape, rate: float) -> None:
        seed = shape.seed(rate)
        out_dir = self.results / shape.name / setup.name
        if shape.dataset is not None:  # the trace's own gaps, rescaled to a mean of `rate`
            workload = ["--workload", "trace", "--dataset", shape.dataset]
        else:
            workload = ["--input-len", shape.input_len, "--output-len", shape.output_len]
        cmd = [
            sys.executable, "run_experiment.py", "--mode", setup.mode, "--endpoint", setup.endpoint,
            *workload, "--num-requests", str(shape.requests(rate, self.args.num_requests)),
            "--rate", f"{rate:g}", "--seed", str(seed),
            "--warmup", "4", "--idle-seconds", f"{self.args.idle_seconds:g}",
            "--monitor-interval", "0.1", "--request-timeout", "300",
            "--gpu-ids", self.args.gpu_ids, "--gpu-roles", setup.gpu_roles,
            "--server-metrics", setup.server_metrics, "--launch-plan", str(run_dir),
            "--output-dir", str(out_dir), "--tag", f"rate{rate:g}",
        ]  # fmt: skip
        log(f"{setup.name} {shape.name} rate {rate:g} seed {seed}")
        # Never past the budget: a device call that hits its own limit loses everything not yet packed.
        limit = min(max(2 * point_estimate_s(shape, rate, self.args.num_requests), 120.0), self.left())
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:  # SIGTERM: the runner marks its result incomplete and exits
            log(f"point ran past {limit:.0f} s (its limit or the budget's end): stopped, incomplete")
            proc.terminate()
            out, _ = proc.communicate(timeout=60)
        keep = ("result:", " ok, ", "warning", "error", "interrupted")
        print("\n".join(ln for ln in out.splitlines() if any(k in ln for k in keep)), flush=True)

    def hook(self, setup: Setup, when: str, template: str) -> int:
        """--on-start / --on-end: one shell command while the setup is up (before / after its points)."""
        if not template:
            return 0
        cmd = template.replace("{endpoint}", setup.endpoint).replace("{setup}", setup.name)
        log(f"{setup.name} {when}: {cmd}")
        t = time.monotonic()
        rc = subprocess.run(cmd, shell=True).returncode
        log(f"{setup.name} {when}: exit {rc} after {time.monotonic() - t:.0f} s")
        return rc

    def run_setup(self, setup: Setup, shapes: list[Shape]) -> None:
        todo = self.todo(setup, shapes)
        if not todo:
            log(f"{setup.name}: every point done")
            return
        first = point_estimate_s(todo[0][0], todo[0][1], self.args.num_requests)
        up = self.up(setup)  # a setup left up needs no launch reserved
        if self.left() < first + (0.0 if up else self.args.launch_est_s):
            what = "run one point on it (up)" if up else "start it and run one point"
            log(f"{setup.name}: {self.left():.0f} s left, not enough to {what}")
            return
        run_dir = self.launch(setup, up)
        if run_dir is None:
            return
        try:
            if rc := self.hook(setup, "on start", self.args.on_start):  # e.g. its profile or predictions
                log(f"{setup.name}: its --on-start failed (exit {rc}): none of its points run")
                todo = []
            for shape, rate in todo:
                need = point_estimate_s(shape, rate, self.args.num_requests)
                if self.left() < need:
                    log(f"budget: {self.left():.0f} s left < {need:.0f} s for {shape.name} rate {rate:g}")
                    break
                self.point(setup, run_dir, shape, rate)
            self.hook(setup, "on end", self.args.on_end)
        finally:
            if self.args.keep_up:
                log(f"{setup.name} kept up (--keep-up): stop it with python -m {setup.stop} stop {run_dir}")
            else:
                self.stop(setup, run_dir)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setups", default="replicas,single,pd", help=f"comma-separated: {', '.join(SETUPS)}")
    p.add_argument(
        "--shapes",
        default="prefill-heavy",
        help=f"comma-separated: {', '.join(SHAPES)} (experiments/shapes.py)",
    )
    p.add_argument("--rates", default=None, help="override every shape's rates (comma-separated req/s)")
    p.add_argument("--results", default="results/h200x2/frontier", help="where the runs go")
    p.add_argument("--launch-dir", default="/tmp/testbed-runs", help="launcher run dirs (logs, plans)")
    p.add_argument("--model", default="llama-3.1-8b", help="model path or config-only shape")
    p.add_argument("--num-requests", type=int, default=200, help="measured requests per point")
    p.add_argument(
        "--min-arrival-s",
        type=float,
        default=None,
        help="every point's arrivals last at least this long (steady state: >= 3 mean E2E latencies); "
        "default: the shape's own",
    )
    p.add_argument(
        "--print-points",
        action="store_true",
        help="print each point still to run (setup shape rate requests seed input_len output_len) and exit: "
        "what a planner prediction of the same points needs",
    )
    p.add_argument("--gpu-ids", default="0,1", help="GPUs the monitor records")
    p.add_argument("--budget-s", type=float, default=560.0, help="start nothing that would end past this")
    p.add_argument("--launch-timeout", type=float, default=420.0, help="seconds to wait for /health")
    p.add_argument(
        "--launch-est-s",
        type=float,
        default=LAUNCH_EST_S,
        help="launch time to reserve before starting a setup (a warm host's vLLM starts in 60-115 s)",
    )
    p.add_argument("--idle-seconds", type=float, default=5.0, help="idle baseline before each point")
    p.add_argument(
        "--keep-up",
        action="store_true",
        help="leave each setup running after its points, and reuse one already up (its launch dir has a "
        "launch.json and its endpoint answers): a campaign split over device calls launches once",
    )
    p.add_argument(
        "--launch-args",
        default="",
        help="extra launcher flags for every setup, e.g. '--kv-block-size 32' (give each variant its own "
        "--results)",
    )
    p.add_argument(
        "--on-start",
        default="",
        help="shell command run once per setup after it is healthy, before its points ({endpoint} and "
        "{setup} are filled in), e.g. a planner profile of the idle instance; when it fails, none of the "
        "setup's points run",
    )
    p.add_argument(
        "--on-end",
        default="",
        help="shell command run once per setup after its points, before it stops (as --on-start), e.g. "
        "saving a decode instance's /metrics once its connector has moved KV",
    )
    return p


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        setups = [SETUPS[s.name] for s in parse_campaign_setups(args.setups)]
        shapes = [SHAPES[s] for s in args.shapes.split(",") if s]
        if args.min_arrival_s is not None:
            shapes = [replace(s, min_arrival_s=args.min_arrival_s) for s in shapes]
        args.rates = tuple(float(r) for r in args.rates.split(",")) if args.rates else None
    except KeyError as exc:
        print(f"error: unknown shape {exc}; choose from {', '.join(SHAPES)}", file=sys.stderr)
        return 2
    except VocabularyError as exc:
        print(f"error: --setups: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: --rates: {exc}", file=sys.stderr)
        return 2
    campaign = Campaign(args)
    if args.print_points:
        for setup in setups:
            for shape, rate in campaign.todo(setup, shapes):
                n, seed = shape.requests(rate, args.num_requests), shape.seed(rate)
                print(setup.name, shape.name, f"{rate:g}", n, seed, shape.input_len, shape.output_len)
        return 0
    signal.signal(signal.SIGTERM, _interrupt)  # `timeout` stops us: servers still get stopped
    try:
        for setup in setups:
            campaign.run_setup(setup, shapes)
    except KeyboardInterrupt:
        log("campaign interrupted")
        return 130
    log(f"campaign done, {campaign.left():.0f} s of the budget left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
