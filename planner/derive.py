"""`python -m planner derive --from P --model NAME|DIR --out P2`: a profile of another model on the same GPU
and serving stack, predicted from a measured profile (a prediction, to be committed before the device
measures that model, then judged by it).

Each fitted coefficient of the measured (base) profile is scaled by the ratio of what it stands for, read
from the two models' configs (`experiments.model_dir.param_counts`, `shape_from_config`). W is the rate at
which a step reads weights (`--weight-read-bytes-per-s`, default 4.1 TB/s: 85% of H200's 4.8 TB/s HBM3e
peak, what large matrix-vector products reach). "Read bytes" are the weights a step streams once: every
parameter but the input embedding (a step looks up only its tokens' rows; a tied table is read as the
head), the layers' matrices at the checkpoint's dtype (FP8 checkpoint: 1 byte; vLLM leaves embedding and
head in bf16), the rest at torch_dtype.

- Intercepts (prefill a, decode a): weight streaming plus a per-layer fixed cost. a = L x o + read / W:
  the base's intercept less its read bytes / W, per layer, gives o (kernel launches and small kernels:
  norms, rotary, activation, a step's bookkeeping); the new model pays o per layer plus its own read
  bytes / W. Assumes o per layer is the base's, and W the same for any model on this GPU. At W = the
  base's read bytes / its decode a (3.1 TB/s for the 8B) o is 0 and the rule is a pure bytes ratio.
  A mixture-of-experts model: prefill a reads every expert (a prefill step of >= 256 tokens touches all of
  them, planner/engine.py), decode a only the non-expert weights (next rule).
- Experts (decode e, MoE only): a decode step reads each expert its batch is routed to, once per MoE
  layer: e = bytes of one expert of one layer x MoE layers / W, times experts_touched(batch) per layer
  (uniform routing, planner/profile_model.py). From an MoE base: its e x the ratio of those bytes.
- Prefill per token (b): GEMM time per prompt token ~ 2 x active layer-matrix parameters (attention,
  MLP, the experts a token is routed to; the head computes only a sequence's last token). FP8 GEMMs take
  1 / `--fp8-gemm-speedup` of the bf16 time per FLOP (default 1.6: H200's dense FP8 peak is 2x bf16's,
  less the dynamic activation quantization and the parts that are not GEMMs). b x ratio of those.
- Attention pairs (prefill c): FLOPs per (query, key) pair ~ layers x query heads x head_dim (QK^T and
  PV), in bf16 (the KV cache and attention stay bf16 for an FP8 checkpoint).
- Decode per sequence (b) and batch^2 (d): both are a step's compute growing with its batch (d: the
  GEMMs turning compute-bound past batch ~128, results/profiles/README.md), so both scale with GEMM time
  per decoded token: as prefill b plus the head (every decoded token computes logits). Assumes the
  batch where GEMMs turn compute-bound is the base's: true for dense models (weights and FLOPs both scale
  with the parameters); for an MoE each expert sees ~batch x k/E tokens, so its GEMMs turn compute-bound
  much later and d likely overstates its growth past batch 128.
- Decode per context token (c): reading the context's KV: x KV bytes per token (`ModelShape.
  bytes_per_token`; bf16 for an FP8 checkpoint unless `--kv-cache-dtype fp8`).
- KV capacity: vLLM gives the KV cache HBM x gpu_memory_utilization - weights - the rest of its peak
  (activations at max_num_batched_tokens, CUDA graphs, allocator). That rest R is the base's: R = HBM x
  u - base weights - base KV tokens x base bytes/token; the new pool = (HBM x u - weights - R) / bytes
  per token, in whole blocks. Assumes R is the same for another model (activations grow with hidden and
  intermediate size, so a larger model's pool is likely a little smaller). HBM: `--gpu-memory-bytes`
  (default: NVML's total for a known GPU), u: `--gpu-memory-utilization` (default 0.9, the launchers').
- Carried unchanged: engine limits other than the KV pool (max_num_batched_tokens, max_num_seqs, block
  size); the API server's time (tokenizing, same stack) and the serving loop; the KV transfer's fixed
  costs at the new KV bytes per token (`planner.kv_transfer.carried_kv`); power (same GPU, same clocks).
  A larger model keeps the GPU busier per step, so its prefill and decode watts are likely at or above
  the base's (the 8B already reaches the 700 W limit from decode batch 128 up): energy per request is
  likely underestimated at small batches.

The derived profile says so everywhere: provenance.source "derived", its notes name the base profile and
every ratio, no raw points, each fit keeps the base's stated error with 0 points of its own.
`derive --check MEASURED --against DERIVED` judges it, rule by rule, once the model is measured
(planner/derive_check.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from experiments.model_dir import (
    SHAPES,
    dtype_bytes,
    param_counts,
    read_config,
    shape_from_config,
)
from planner.fits import Fit
from planner.kv_transfer import carried_kv
from planner.prefill_model import EAGER_FEATURE
from planner.profile_model import (
    DECODE_FEATURES,
    MOE_FEATURE,
    DecodeModel,
    EngineLimits,
    PowerModel,
    PrefillModel,
    Profile,
    Provenance,
    load_profile,
)

# NVML's memory.total (bytes) of the GPUs profiles were measured on; others take --gpu-memory-bytes.
GPU_MEMORY_BYTES = {"NVIDIA H200": 150_754_820_096}  # 143,771 MiB, as the monitor records it
DEFAULT_WEIGHT_READ_BYTES_PER_S = 4.1e12
DEFAULT_FP8_GEMM_SPEEDUP = 1.6
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
# The sizes the H200 profiles measure (disagg/campaigns/h200_profile.sh and the 8B's points): prompts,
# decode batches, decode contexts (the 8B's: 512/1024/2048-token prompts + 128, its mean decoded tokens;
# batch x context over the KV pool is then also the profile's rule for skipping a point at 128 tokens).
TABLE_PREFILL_TOKENS = (256, 512, 1024, 2048, 4096, 8192, 16384)
TABLE_DECODE_BATCHES = (1, 4, 16, 64, 128, 256)
TABLE_DECODE_CONTEXTS = (640, 1152, 2176)


@dataclass(frozen=True)
class DeriveOptions:
    """The stated assumptions (module docstring)."""

    weight_read_bytes_per_s: float = DEFAULT_WEIGHT_READ_BYTES_PER_S
    fp8_gemm_speedup: float = DEFAULT_FP8_GEMM_SPEEDUP
    gpu_memory_bytes: int | None = None  # None: GPU_MEMORY_BYTES of the base profile's GPU
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    kv_cache_dtype: str | None = None  # the target's; the base's KV bytes are its profile's


@dataclass(frozen=True)
class ModelCost:
    """What each fitted coefficient stands for, for one model config."""

    layers: int
    resident_bytes: float  # every weight in GPU memory
    read_bytes: float  # weights a step streams once with every expert touched (module docstring)
    expert_bytes: float  # one routed expert of one layer
    experts_bytes: float  # every routed expert of every layer
    moe_layers: int
    prefill_gemm: float  # GEMM time per prompt token, in bf16 FLOPs (FP8 FLOPs / speedup)
    decode_gemm: float  # the same per decoded token (with the head)
    attention: float  # layers x query heads x head_dim
    kv_bytes_per_token: int

    @property
    def dense_read_bytes(self) -> float:
        """What a decode step reads besides the routed experts."""
        return self.read_bytes - self.experts_bytes


def linear_bytes(config: dict[str, Any]) -> int:
    """Bytes per element of the layers' matrices: 1 for an FP8 checkpoint, else torch_dtype's."""
    quant = config.get("quantization_config")
    if quant:
        method = str(quant.get("quant_method", ""))
        if method != "fp8":
            raise ValueError(f"quantization {method!r}: derive knows bf16/fp16 and FP8 checkpoints only")
        return 1
    return dtype_bytes(str(config.get("torch_dtype", "bfloat16")))


def model_cost(
    config: dict[str, Any], options: DeriveOptions, kv_cache_dtype: str | None = None
) -> ModelCost:
    counts = param_counts(config)
    lin, other = linear_bytes(config), dtype_bytes(str(config.get("torch_dtype", "bfloat16")))
    speed = options.fp8_gemm_speedup if lin == 1 else 1.0
    head = counts.lm_head or counts.embedding  # a tied table is read and multiplied as the head
    active_linear = counts.active - counts.embedding - counts.lm_head
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    return ModelCost(
        layers=int(config["num_hidden_layers"]),
        resident_bytes=float(counts.layer_linear * lin + (counts.embedding + counts.lm_head) * other),
        read_bytes=float(counts.layer_linear * lin + head * other),
        expert_bytes=float(counts.expert * lin),
        experts_bytes=float(counts.experts * lin),
        moe_layers=counts.moe_layers,
        prefill_gemm=2.0 * active_linear / speed,
        decode_gemm=2.0 * active_linear / speed + 2.0 * head,
        attention=float(int(config["num_hidden_layers"]) * heads * head_dim),
        kv_bytes_per_token=shape_from_config(config, "config", kv_cache_dtype).bytes_per_token,
    )


def _stated(fit: Fit, coefficients: Sequence[float], features: Sequence[str] | None = None) -> Fit:
    """A derived fit: new coefficients, the base's stated error, no points of its own."""
    return Fit(
        tuple(features or fit.features),
        tuple(float(c) for c in coefficients),
        fit.r2,
        fit.max_rel_error,
        fit.rms_rel_error,
        0,
    )


def _intercept(
    a: float, base: ModelCost, new: ModelCost, base_read: float, new_read: float, w: float, what: str
) -> tuple[float, str]:
    overhead = (a - base_read / w) / base.layers
    if overhead < 0:
        raise ValueError(
            f"the base's {what} intercept ({1e3 * a:.2f} ms) is below reading its {base_read / 1e9:.1f} "
            f"GB of weights at {w / 1e12:.2f} TB/s: give a higher --weight-read-bytes-per-s"
        )
    value = new.layers * overhead + new_read / w
    return value, (
        f"{what} a {1e3 * a:.2f} -> {1e3 * value:.2f} ms ({new.layers} layers x {1e6 * overhead:.1f} "
        f"us + {new_read / 1e9:.2f} GB / {w / 1e12:.2f} TB/s)"
    )


def kv_capacity_tokens(
    base: Profile, base_cost: ModelCost, new: ModelCost, options: DeriveOptions
) -> tuple[int, str]:
    hbm = options.gpu_memory_bytes or GPU_MEMORY_BYTES.get(base.provenance.gpu or "")
    if not hbm:
        raise ValueError(f"GPU {base.provenance.gpu!r}: memory unknown; give --gpu-memory-bytes")
    budget = hbm * options.gpu_memory_utilization
    bpt_base = base.kv_transfer.bytes_per_token
    reserve = budget - base_cost.resident_bytes - base.engine.kv_capacity_tokens * bpt_base
    if reserve < 0:
        raise ValueError(
            f"the base's weights and KV pool exceed {options.gpu_memory_utilization:g} x {hbm / 1e9:.1f} GB: "
            "give the --gpu-memory-utilization (and --gpu-memory-bytes) it ran with"
        )
    room = budget - new.resident_bytes - reserve
    block_bytes = new.kv_bytes_per_token * base.engine.block_size
    blocks = math.floor(room / block_bytes + 1e-9)
    if blocks < 1:
        raise ValueError(
            f"no KV room: {new.resident_bytes / 1e9:.1f} GB of weights + {reserve / 1e9:.1f} GB reserve "
            f"exceed {options.gpu_memory_utilization:g} x {hbm / 1e9:.1f} GB"
        )
    tokens = blocks * base.engine.block_size
    return tokens, (
        f"KV pool ({options.gpu_memory_utilization:g} x {hbm / 1e9:.2f} GB - "
        f"{new.resident_bytes / 1e9:.2f} GB weights - {reserve / 1e9:.2f} GB reserve as the base's) "
        f"/ {new.kv_bytes_per_token} B/token = {tokens} tokens"
    )


def derive_profile(
    base: Profile,
    base_config: dict[str, Any],
    config: dict[str, Any],
    model: str,
    origin: str,
    options: DeriveOptions = DeriveOptions(),
    command: str | None = None,
) -> Profile:
    """`base` (measured on `base_config`'s model) scaled to `config`'s model by the module's rules."""
    routing = param_counts(config).routing
    b0 = model_cost(base_config, options, None)
    b0 = replace(b0, kv_bytes_per_token=int(base.kv_transfer.bytes_per_token))  # as the base measured it
    new = model_cost(config, options, options.kv_cache_dtype)
    w = options.weight_read_bytes_per_s
    notes: list[str] = []
    pa, pb, pc = base.prefill.terms
    a, text = _intercept(pa, b0, new, b0.read_bytes, new.read_bytes, w, "prefill")
    notes.append(text)
    prefill = [a, pb * new.prefill_gemm / b0.prefill_gemm, pc * new.attention / b0.attention]
    notes.append(
        f"prefill b x {new.prefill_gemm / b0.prefill_gemm:.3f} (GEMM FLOPs per prompt token), "
        f"c x {new.attention / b0.attention:.3f} (layers x heads x head_dim)"
    )
    if EAGER_FEATURE in base.prefill.fit.features:
        prefill.append(base.prefill.eager_s)
        notes.append(f"prefill e {1e3 * base.prefill.eager_s:.1f} ms per eager step carried unscaled")
    da, db, dc, dd = base.decode.terms
    a, text = _intercept(da, b0, new, b0.dense_read_bytes, new.dense_read_bytes, w, "decode")
    notes.append(text)
    g = new.decode_gemm / b0.decode_gemm
    kv = new.kv_bytes_per_token / b0.kv_bytes_per_token
    decode = [a, db * g, dc * kv, dd * g]
    notes.append(f"decode b, d x {g:.3f} (GEMM FLOPs per decoded token), c x {kv:.3f} (KV bytes per token)")
    features = list(DECODE_FEATURES)
    if routing:
        expert_read = new.expert_bytes * new.moe_layers
        if base.decode.routing and base.decode.expert_s > 0:
            e = base.decode.expert_s * expert_read / (b0.expert_bytes * b0.moe_layers)
        else:
            e = expert_read / w
        decode.append(e)
        features.append(MOE_FEATURE)
        notes.append(
            f"decode e {1e6 * e:.1f} us per expert touched per layer ({new.expert_bytes / 1e6:.2f} MB per "
            f"expert per layer x {new.moe_layers} layers)"
        )
    kv_tokens, text = kv_capacity_tokens(base, b0, new, options)
    notes.append(text)
    head = (
        f"derived from {origin} ({base.provenance.model}, {base.provenance.source}) by planner/derive.py "
        f"(W {w / 1e12:.2f} TB/s, FP8 GEMM speedup {options.fp8_gemm_speedup:g}); not measured"
    )
    carried = f"carried from {origin}"
    return Profile(
        provenance=Provenance(
            source="derived",
            model=model,
            gpu=base.provenance.gpu,
            vllm_version=base.provenance.vllm_version,
            clocks=base.provenance.clocks,
            created_iso=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            command=command,
            notes="; ".join([head, *notes]),
        ),
        engine=EngineLimits(
            base.engine.max_num_batched_tokens,
            base.engine.max_num_seqs,
            kv_tokens,
            base.engine.block_size,
            f"derived: {text}; the other limits {carried}",
            base.engine.cudagraph_max_tokens,
        ),
        prefill=PrefillModel(_stated(base.prefill.fit, prefill), base.prefill.graph_tokens),
        decode=DecodeModel(_stated(base.decode.fit, decode, features), routing),
        kv_transfer=carried_kv(base.kv_transfer, float(new.kv_bytes_per_token), origin),
        power=_carried_power(base.power),
        frontend=replace(base.frontend, source=f"{carried}: {base.frontend.source}", fit=None, points=()),
        loop=replace(base.loop, source=f"{carried}: {base.loop.source}"),
    )


def _carried_power(power: PowerModel) -> PowerModel:
    if power.decode_fit is None:
        return power
    return replace(power, decode_fit=_stated(power.decode_fit, power.decode_fit.coefficients))


def prediction_table(profiles: dict[str, Profile]) -> str:
    """Markdown: each profile's prefill latency (as a client sees a prompt alone), decode step and KV
    pool at the sizes the H200 profile measures; a decode cell whose batch x context exceeds the pool is
    starred (the profile skips it)."""
    names = list(profiles)
    head = "| " + " | ".join(["", *names]) + " |\n|" + "---|" * (len(names) + 1) + "\n"
    rows = ["KV pool, tokens", "KV bytes/token"]
    out = [
        "| " + " | ".join([rows[0], *(f"{p.engine.kv_capacity_tokens:,}" for p in profiles.values())]) + " |",
        "| "
        + " | ".join([rows[1], *(f"{p.kv_transfer.bytes_per_token:,.0f}" for p in profiles.values())])
        + " |",
    ]
    for n in TABLE_PREFILL_TOKENS:
        cells = [f"{1e3 * p.client_prefill_s(n):.1f}" for p in profiles.values()]
        out.append("| " + " | ".join([f"prefill {n} tokens, ms", *cells]) + " |")
    for ctx in TABLE_DECODE_CONTEXTS:
        for b in TABLE_DECODE_BATCHES:
            cells = []
            for p in profiles.values():
                star = "*" if b * ctx > p.engine.kv_capacity_tokens else ""
                cells.append(f"{1e3 * p.decode.step_s(b, b * ctx):.2f}{star}")
            out.append("| " + " | ".join([f"decode step, batch {b} x {ctx} ctx, ms", *cells]) + " |")
    return head + "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------


def _config(model: str, flag: str) -> dict[str, Any]:
    config = read_config(model)
    if config is None:
        raise ValueError(
            f"{flag} {model!r}: not a shape ({', '.join(SHAPES)}) nor a directory with config.json"
        )
    return config


def base_config(base: Profile, given: str | None) -> dict[str, Any]:
    """The base profile's model config: --base-model, else its provenance's model (a shape's name, or a
    directory that still exists here)."""
    if given:
        return _config(given, "--base-model")
    name = Path(base.provenance.model).name
    config = read_config(name if name in SHAPES else base.provenance.model)
    if config is None:
        raise ValueError(
            f"the base profile's model {base.provenance.model!r} is not readable here: give --base-model"
        )
    return config


def add_derive_parser(sub: Any) -> None:
    p = sub.add_parser(
        "derive",
        help="predict a profile of another model on the same GPU from a measured one",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--from", dest="base", type=Path, help="measured profile JSON (the base)")
    p.add_argument("--model", help=f"a shape ({', '.join(SHAPES)}) or a model directory")
    p.add_argument("--out", type=Path, help="derived profile JSON to write")
    p.add_argument("--base-model", default=None, help="the base's model (default: its provenance's)")
    p.add_argument("--kv-cache-dtype", default=None, help="the new model's KV dtype as vLLM's flag (fp8)")
    p.add_argument(
        "--weight-read-bytes-per-s",
        type=float,
        default=DEFAULT_WEIGHT_READ_BYTES_PER_S,
        help="rate a step reads weights at (default 4.1e12: 85%% of H200's peak)",
    )
    p.add_argument(
        "--fp8-gemm-speedup",
        type=float,
        default=DEFAULT_FP8_GEMM_SPEEDUP,
        help="FP8 GEMM time per FLOP vs bf16 (default 1.6; peak 2)",
    )
    p.add_argument("--gpu-memory-bytes", type=int, default=None, help="GPU memory (default: known GPUs')")
    p.add_argument("--gpu-memory-utilization", type=float, default=DEFAULT_GPU_MEMORY_UTILIZATION)
    p.add_argument("--table", type=Path, default=None, help="also write the prediction table (markdown)")
    judge = p.add_argument_group("judge a derived profile by a measured one (planner/derive_check.py)")
    judge.add_argument("--check", type=Path, default=None, metavar="MEASURED", help="measured profile JSON")
    judge.add_argument("--against", type=Path, default=None, metavar="DERIVED", help="derived profile JSON")
    judge.add_argument("--markdown", type=Path, default=None, help="also write the comparison (markdown)")
    judge.add_argument("--json", type=Path, default=None, help="also write the comparison (JSON)")


def cmd_derive(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    if args.check is not None:
        from planner.derive_check import cmd_check

        return cmd_check(args)
    missing = [
        flag for flag, v in (("--from", args.base), ("--model", args.model), ("--out", args.out)) if not v
    ]
    if missing:
        raise ValueError(f"derive needs {', '.join(missing)} (or --check MEASURED --against DERIVED)")
    for name in ("weight_read_bytes_per_s", "fp8_gemm_speedup", "gpu_memory_utilization"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0")
    base = load_profile(args.base)
    options = DeriveOptions(
        args.weight_read_bytes_per_s,
        args.fp8_gemm_speedup,
        args.gpu_memory_bytes,
        args.gpu_memory_utilization,
        args.kv_cache_dtype,
    )
    config = _config(args.model, "--model")
    command = shlex.join(["python", "-m", "planner", *(argv or [])]) if argv else None
    try:
        prof = derive_profile(
            base, base_config(base, args.base_model), config, args.model, str(args.base), options, command
        )
    except KeyError as exc:
        raise ValueError(
            f"a model's config.json lacks {exc}: derive needs a decoder-only transformer's"
        ) from exc
    out = prof.save(args.out)
    print(prof.describe())
    table = prediction_table({f"{Path(base.provenance.model).name} (base)": base, args.model: prof})
    print(table)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(table)
    print(f"profile: {out}")
    return 0
