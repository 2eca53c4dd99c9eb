"""One vLLM OpenAI-compatible server process (GPU or the CPU default): its spec, start, health, stop.

The primitive every launcher uses: the single-instance baseline starts one, the disaggregated launcher
starts prefill and decode instances with a KV-transfer config (and the proxy, via `command_override`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.model_dir import model_shape, serving_tokenizer

# What every vLLM process of this testbed needs (see reference/launch_recipe.md); what a KV connector
# needs on top comes with the instance's spec (disagg.kv_config.instance_env).
COMMON_ENV = {
    "NCCL_NVLS_ENABLE": "0",  # NVLink multicast stays off on shared hosts
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
    "VLLM_USE_FLASHINFER_SAMPLER": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
    "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # CUDA ids = NVML indices, so the monitor watches the right GPUs
}
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


def has_nvidia_gpu() -> bool:
    """True when an NVIDIA driver answers (NVML), i.e. the GPU path applies."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return False


@dataclass
class ServerSpec:
    """One vLLM instance. `gpu` None means the CPU build (vllm-cpu)."""

    model: str
    port: int
    name: str = "vllm"
    host: str = "127.0.0.1"
    gpu: str | None = None
    max_model_len: int = 2048
    gpu_memory_utilization: float = 0.9
    load_format: str | None = None  # None: dummy for our config-only models, else vLLM's default
    seed: int = 0
    block_size: int | None = None  # tokens per KV-cache block; None: vLLM's default
    kv_transfer_config: dict[str, Any] | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    command_override: list[str] | None = None  # a non-vLLM process (the proxy) supervised the same way

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def effective_load_format(self) -> str | None:
        if self.load_format:
            return self.load_format
        return "dummy" if model_shape(self.model) is not None else None

    def command(self) -> list[str]:
        if self.command_override is not None:
            return list(self.command_override)
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
        cmd += ["--model", self.model, "--host", self.host, "--port", str(self.port)]
        cmd += ["--max-model-len", str(self.max_model_len), "--seed", str(self.seed)]
        if (fmt := self.effective_load_format()) is not None:
            cmd += ["--load-format", fmt]
        if (tok := serving_tokenizer(self.model)) != self.model and "--tokenizer" not in self.extra_args:
            cmd += ["--tokenizer", tok]  # a config-only model's tokenizer, away from its config's model_type
        if self.gpu is not None:
            cmd += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.block_size is not None:
            cmd += ["--block-size", str(self.block_size)]
        if self.kv_transfer_config is not None:
            cmd += ["--kv-transfer-config", json.dumps(self.kv_transfer_config, separators=(",", ":"))]
        return cmd + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **COMMON_ENV}
        if self.gpu is None:
            env.update(CPU_ENV)
            env["CUDA_VISIBLE_DEVICES"] = ""
        else:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        env.update(self.env)
        return env

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "model": self.model,
            "gpu": self.gpu,
            "command": self.command(),
            "env": {
                k: v for k, v in self.environment().items() if k in {**COMMON_ENV, **CPU_ENV, **self.env}
            },
        }


class ServerError(RuntimeError):
    pass


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ManagedServer:
    """A vLLM process with its log and pid file in a run directory."""

    def __init__(self, spec: ServerSpec, run_dir: str | Path) -> None:
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.log_path = self.run_dir / f"{spec.name}.log"
        self.pid_path = self.run_dir / f"{spec.name}.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if http_ok(self.spec.url + "/health", timeout=1.0):
            raise ServerError(
                f"port {self.spec.port} already serves a healthy server; stop it or pick another"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / f"{self.spec.name}.json").write_text(json.dumps(self.spec.to_dict(), indent=2))
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            self.spec.command(),
            env=self.spec.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends all its workers
        )
        log.close()
        self.pid_path.write_text(str(self.proc.pid))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        return http_ok(self.spec.url + "/health")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            signal_group(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        signal_group(self.proc.pid, signal.SIGKILL)  # leftover workers of the group
        self.pid_path.unlink(missing_ok=True)


def signal_group(pid: int, sig: int) -> None:
    """Signal a process group (every launched process leads its own); gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def wait_all_healthy(servers: list[ManagedServer], timeout_s: float, progress: bool = True) -> None:
    """Wait until every server answers /health; fail fast if one exits. Prints one progress line."""
    t0 = time.monotonic()
    pending = list(servers)
    tty, last_line = sys.stderr.isatty(), -10.0
    while pending:
        for s in list(pending):
            if not s.alive():
                code = s.proc.returncode if s.proc else "?"
                raise ServerError(
                    f"{s.spec.name} on :{s.spec.port} exited with code {code}; "
                    f"see {s.log_path}:\n{s.log_tail()}"
                )
            if s.healthy():
                pending.remove(s)
        elapsed = time.monotonic() - t0
        if progress and (tty or not pending or elapsed - last_line >= 10):
            last_line = elapsed
            names = ", ".join(f"{s.spec.name}:{s.spec.port}" for s in pending) or "all healthy"
            line = f"  waiting for /health ({elapsed:5.0f} s / {timeout_s:.0f} s): {names}   "
            print("\r" + line if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
        if not pending:
            break
        if elapsed > timeout_s:
            if progress and tty:
                print(file=sys.stderr)
            s = pending[0]
            raise ServerError(
                f"{s.spec.name} on :{s.spec.port} is not healthy after {timeout_s:.0f} s; see {s.log_path}"
            )
        time.sleep(1.0)
    if progress and tty:
        print(file=sys.stderr)
