"""An illustrative (NOT measured) profile shaped like Llama-3.1-8B on one H200, for demos and benchmarks.

Its raw points are generated from the formulas below with +-2% seeded noise and then fitted by the
same code as a measured profile. The constants were chosen to land near the measured 2 x H200 numbers
in results/h200x2/README.md (8B shape, 2048 in / 256 out): one instance's TTFT p50 ~67 ms at 4 req/s,
TPOT ~5.4 ms at a decode batch of ~5 and ~6.4 ms at ~16, idle ~120 W per GPU, a busy decode GPU
~525 W, the prefill GPU's bursts up to ~850 W, a P2P NCCL GET pull ~22 ms. A prompt alone costs the
client what it did before the API-server time was modelled apart; that time (9.8 ms + 3.3 us per
prompt token) is read off vLLM's own histograms in the frontier runs at 4 req/s (TTFT - queue -
prefill: ~11.5 ms at 512 tokens, ~16.5 ms at 2048), and taken out of the prefill intercept and slope
and out of the KV latency; the connector's prefill-side time (11 ms) is the 1P1D run's median prefill
leg at 4 req/s (72.9 ms) less the prompt alone (61.7 ms). Numbers read off the runs that
`planner validate` compares against: agreement there is no evidence. They are not a profile: run
`python -m planner profile` on the GPU before trusting any prediction.
"""

from __future__ import annotations

import math

import numpy as np

from planner.kv_transfer import DEFAULT_BANDWIDTH_BYTES_PER_S, LLAMA_8B_KV_BYTES_PER_TOKEN
from planner.profile_model import (
    DecodePoint,
    EngineLimits,
    FrontendModel,
    KvTransferModel,
    PowerPoint,
    PrefillPoint,
    Profile,
    Provenance,
    build_profile,
    prefill_features,
)

# API server s = F0 + F1*prompt tokens (beside the GPU); a prompt alone = that + its prefill steps
FRONTEND_S, FRONTEND_PER_TOKEN_S = 0.0098, 3.3e-6
# Prefill step s = A*steps + B*tokens + C*pairs (the client saw 12 ms + 22 us per token + C*pairs)
PREFILL_A, PREFILL_B, PREFILL_C = 0.012 - FRONTEND_S, 2.2e-5 - FRONTEND_PER_TOKEN_S, 1.0e-9
# Decode step s = A + B*batch + C*context_sum
DECODE_A, DECODE_B, DECODE_C = 5.0e-3, 3.0e-5, 2.7e-8
IDLE_W, PREFILL_W, DECODE_W0, DECODE_W1 = 120.0, 630.0, 330.0, 70.0
KV_LATENCY_S = 0.022 - (FRONTEND_S + 2048 * FRONTEND_PER_TOKEN_S)  # the decode side's API server apart
KV_PREFILL_OVERHEAD_S = 0.011
# vLLM's OpenAI-server defaults on 70-160 GiB GPUs (vllm/engine/arg_utils.py), KV ~0.8M tokens.
ENGINE = EngineLimits(8192, 1024, 800_000, 16, "vLLM defaults for H100/H200 (API server); KV estimated")
NOISE = 0.02


def illustrative_profile(seed: int = 0) -> Profile:
    rng = np.random.default_rng(seed)

    def noisy(value: float) -> float:
        return float(value * (1 + rng.uniform(-NOISE, NOISE)))

    budget = ENGINE.max_num_batched_tokens
    frontend = FrontendModel(
        FRONTEND_S, FRONTEND_PER_TOKEN_S, "illustrative: vLLM's TTFT - queue - prefill in the frontier runs"
    )
    prefill = []
    for n in (256, 512, 1024, 2048, 4096, 8192, 16384):
        steps, tokens, pairs = prefill_features(n, budget)
        client = frontend.delay_s(n) + PREFILL_A * steps + PREFILL_B * tokens + PREFILL_C * pairs
        prefill.append(PrefillPoint(n, noisy(client)))
    decode = []
    for batch in (1, 4, 16, 64, 256):
        for ctx in (512, 1024, 2048, 4096):
            step = DECODE_A + DECODE_B * batch + DECODE_C * batch * ctx
            decode.append(DecodePoint(batch, float(ctx), noisy(step), gaps=100))
    power = [PowerPoint("idle", noisy(IDLE_W), 5.0), PowerPoint("prefill", noisy(PREFILL_W), 5.0)]
    power += [
        PowerPoint("decode", noisy(DECODE_W0 + DECODE_W1 * math.log(b)), 5.0, batch=b) for b in (1, 4, 16, 64)
    ]
    kv = KvTransferModel(
        KV_LATENCY_S,
        LLAMA_8B_KV_BYTES_PER_TOKEN,
        DEFAULT_BANDWIDTH_BYTES_PER_S,
        "illustrative: ~28 ms decode first chunk measured on 2 x H200 (P2P NCCL GET) minus ~6 ms step "
        "and the decode instance's API server",
        prefill_overhead_s=KV_PREFILL_OVERHEAD_S,
        prefill_overhead_source="illustrative: 1P1D median prefill leg at 4 req/s - the prompt alone",
    )
    provenance = Provenance(
        source="illustrative",
        model="llama-3.1-8b shape (dummy weights)",
        gpu="NVIDIA H200 (illustrative numbers, not measured)",
        vllm_version="0.23.0",
        clocks={"sm_clock_mhz": 1980, "mem_clock_mhz": 3201, "power_limit_w": 700.0},
        notes=__doc__.strip().splitlines()[0] if __doc__ else "",
    )
    return build_profile(provenance, ENGINE, prefill, decode, kv, power, frontend=frontend)
