"""KV transfer time per request: a stated default, or a fit to a measured P/D pair's stage timings.

Default (no P/D result): the bytes one token's KV takes for the Llama-3.1-8B shape in bf16 (2 (K and
V) x 32 layers x 8 KV heads x 128 head dim x 2 bytes = 131,072 B; 268 MB per 2048-token request), moved
at ~300 GB/s, a conservative effective rate for one NVLink 4 direction on H100/H200 (450 GB/s nominal),
with no fixed latency. A real connector's per-layer round trips can cost far more than the bytes
(results/h200x2/README.md), so give `--pd-result` whenever a pair has been measured.

From a P/D result: per request, transfer = decode_first_chunk - the decode instance's API-server time
(the profile's frontend model) - (half a decode step of waiting for the next step boundary + one
decode step), the decode step taken from the profile's decode model at the run's mean decode batch
(Little's law: completed req/s x mean decode leg). With one prompt length the bandwidth keeps its
default and the latency is the median remainder; with several, both are fitted. The connector's time
on the prefill GPU is the median of prefill leg - the same prompt alone on a plain instance (API server
+ prefill steps): give a P/D result at light load, where the prefill leg does not queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from planner.fits import fit_nonnegative
from planner.profile_model import DecodeModel, FrontendModel, KvPoint, KvTransferModel

LLAMA_8B_KV_BYTES_PER_TOKEN = 2 * 32 * 8 * 128 * 2
DEFAULT_BANDWIDTH_BYTES_PER_S = 300e9
DEFAULT_SOURCE = (
    "default: 131072 B/token (Llama-3.1-8B bf16 KV) at 300 GB/s (NVLink, effective), no fixed latency; "
    "not measured"
)
STEP_WAIT_FACTOR = 1.5  # half a step waiting for the boundary + the join step itself


def default_kv_transfer(
    bytes_per_token: float = LLAMA_8B_KV_BYTES_PER_TOKEN,
    bandwidth_bytes_per_s: float = DEFAULT_BANDWIDTH_BYTES_PER_S,
) -> KvTransferModel:
    return KvTransferModel(0.0, bytes_per_token, bandwidth_bytes_per_s, DEFAULT_SOURCE)


def kv_points_from_stages(
    prompt_tokens: Sequence[int],
    decode_first_chunk_s: Sequence[float],
    decode_model: DecodeModel,
    mean_batch: float,
    frontend: FrontendModel | None = None,
) -> list[KvPoint]:
    """One point per request: its decode-first-chunk time minus the modeled API-server and decode-step
    shares."""
    batch = max(1, round(mean_batch))
    fe = frontend or FrontendModel()
    out = []
    for n, first in zip(prompt_tokens, decode_first_chunk_s, strict=True):
        step = decode_model.step_s(batch, batch * float(n))
        out.append(KvPoint(int(n), max(float(first) - fe.delay_s(n) - STEP_WAIT_FACTOR * step, 1e-6)))
    return out


def prefill_overhead_s(prefill_leg_s: Sequence[float], alone_s: Sequence[float]) -> float:
    """The connector's time on the prefill GPU per request: median of each prefill leg minus the same
    prompt alone on a plain instance (never below 0)."""
    if not len(prefill_leg_s):
        return 0.0
    return max(float(np.median(np.asarray(prefill_leg_s) - np.asarray(alone_s))), 0.0)


def fit_kv_transfer(
    points: Sequence[KvPoint],
    source: str,
    bytes_per_token: float = LLAMA_8B_KV_BYTES_PER_TOKEN,
    bandwidth_bytes_per_s: float = DEFAULT_BANDWIDTH_BYTES_PER_S,
) -> KvTransferModel:
    """Latency and bandwidth from measured points (latency only when every prompt has one length)."""
    if not points:
        raise ValueError("no KV transfer points: the P/D result has no stage timings with prompt lengths")
    tokens = np.array([p.prompt_tokens for p in points], dtype=float)
    secs = np.array([p.transfer_s for p in points], dtype=float)
    if np.ptp(tokens) == 0:
        latency = float(np.median(secs)) - tokens[0] * bytes_per_token / bandwidth_bytes_per_s
        return KvTransferModel(
            max(latency, 0.0),
            bytes_per_token,
            bandwidth_bytes_per_s,
            f"{source}; one prompt length: latency = median, bandwidth kept at its default",
        )
    fit = fit_nonnegative(("latency_s", "tokens"), np.c_[np.ones_like(tokens), tokens], secs)
    per_token = fit.coefficient("tokens")
    # A zero per-token cost means length does not matter: a bandwidth too high to count (JSON-safe).
    bandwidth = bytes_per_token / per_token if per_token > 0 else 1e18
    return KvTransferModel(fit.coefficient("latency_s"), bytes_per_token, bandwidth, source, fit)


def carried_kv(measured: KvTransferModel, bytes_per_token: float, origin: str) -> KvTransferModel:
    """Another model's measured KV side (fixed latency, bandwidth, prefill side) at `bytes_per_token`:
    for a model no P/D pair has run, the transfer then scales with its own KV size."""
    ratio = bytes_per_token / measured.bytes_per_token
    return replace(
        measured,
        bytes_per_token=bytes_per_token,
        source=f"carried from {origin} ({measured.source}), not measured on this model: fixed costs as "
        f"there, KV {bytes_per_token:.0f} B/token ({ratio:.2f}x its {measured.bytes_per_token:.0f})",
        fit=None,
        prefill_overhead_source=f"carried from {origin}: {measured.prefill_overhead_source}",
        prefill_hold_source=f"carried from {origin}: {measured.prefill_hold_source}",
    )
