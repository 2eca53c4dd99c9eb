"""The profile file: what one vLLM instance costs, measured once, fitted, versioned (JSON).

A profile keeps the raw measured points next to the fitted models and their stated error, plus where
they came from (GPU, clocks, model, vLLM version, engine limits). The simulator reads only the fits:

- prefill step time = a*steps + b*tokens + c*attention_pairs [+ e*eager_steps] (planner/prefill_model.py:
  e is what a step too large for a CUDA graph costs more, fitted only where the graph bound is known);
- decode step time = a + b*batch + c*context_sum + d*batch^2 (context_sum: total tokens the batch
  attends over; the batch^2 term is the step's growth past a large batch (results/profiles/ shows it
  on H200); schema-2 profiles have no d), plus, for a mixture-of-experts model,
  e*experts_touched(batch): a decode step reads the weights of every expert any of its tokens is routed
  to, so its cost follows the number of distinct experts the batch touches per layer, E*(1-(1-k/E)^B)
  for E experts, k per token and B sequences under uniform routing. That count rises steeply, then
  saturates: a concave curve no non-negative a + b*B + d*B^2 can follow. Real routers are skewed, so
  fewer are touched than this; the fitted e absorbs a constant share of that, not its shape (dummy
  weights route near-uniformly); a step with prefill work touches (nearly) every expert already, so
  decodes riding along in it add no experts term (planner/engine.py), and the prefill fit's intercept
  carries the experts' weights;
- KV transfer time = latency + prompt_tokens * bytes_per_token / bandwidth, plus the connector's own
  time on the prefill GPU per request (`prefill_overhead_s`, engine time there);
- API-server time per request = latency + per_token * prompt_tokens: tokenizing and input processing
  before the engine, and the first token's way back, spent beside the GPU (vLLM's own TTFT minus its
  queue and prefill time); the prefill fit is to the client's latency minus this;
- power per GPU: idle W, prefill W (a step with prefill work), decode W = p0 + p1*ln(batch).

Latency fits minimise relative errors: the points span 5 ms to 0.5 s.

Power fields are None (with the reason) where no energy could be measured (CPU, no NVML).
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from experiments.model_dir import MoeRouting
from experiments.schema import SchemaError, convert, to_builtins
from planner.fits import Fit, fit_nonnegative
from planner.prefill_model import PREFILL_FEATURES as PREFILL_FEATURES
from planner.prefill_model import PrefillModel, prefill_rows
from planner.prefill_model import prefill_features as prefill_features

# 2: API-server time and the connector's prefill-side time (version 1 reads as zero); 3: decode batch^2
# term and the API-server points (version 2 reads with d = 0 and no points); 4: either the serving loop
# (async scheduling, API-server time per streamed output) or the MoE decode term (decode.moe and the
# experts_touched feature), written by two lines of work; 5: both. Each is read by its key: a file
# without one reads as synchronous scheduling with no API-server load, or as a dense model.
SCHEMA_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
PROFILE_KIND = "planner-profile"
DECODE_FEATURES = ("step", "batch", "context_sum", "batch_sq")
MOE_FEATURE = "experts_touched"
DECODE_POWER_FEATURES = ("watts", "ln_batch")
DEFAULT_BLOCK_SIZE = 16  # vLLM's default KV block size on GPU and CPU
# measured; derived (scaled from another model's measured profile); illustrative (made up, stated); test
ProfileSource = Literal["measured", "derived", "illustrative", "test"]


class ProfileError(ValueError):
    """A profile file is missing, malformed, or from an unknown schema version."""


# ---------------------------------------------------------------------------------------------------------
# Raw points
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrefillPoint:
    """One prompt of `prompt_tokens` alone on the server (max_tokens=1): median latency of `samples`."""

    prompt_tokens: int
    latency_s: float
    samples: tuple[float, ...] = ()


@dataclass(frozen=True)
class DecodePoint:
    """`batch` streams decoding together, each over ~`context_tokens`: median token gap (one step)."""

    batch: int
    context_tokens: float
    step_s: float
    gaps: int = 0

    @property
    def context_sum(self) -> float:
        return self.batch * self.context_tokens


@dataclass(frozen=True)
class PowerPoint:
    """Average power of one GPU over `seconds` in one state: idle, prefill, or decode at `batch`."""

    state: str
    watts: float
    seconds: float
    energy_j: float | None = None
    batch: int | None = None


@dataclass(frozen=True)
class KvPoint:
    """One measured KV transfer: prompt length and seconds (derived from a P/D pair's stage timings)."""

    prompt_tokens: int
    transfer_s: float


# ---------------------------------------------------------------------------------------------------------
# Provenance and engine limits
# ---------------------------------------------------------------------------------------------------------


def invoked_command() -> str:
    """This planner command as typed, quoted so that it can be pasted back into a shell (the command a
    profile or a map records)."""
    return shlex.join(["python", "-m", "planner", *sys.argv[1:]])


@dataclass(frozen=True)
class Provenance:
    """Where the numbers come from. `source`: how (derived: planner/derive.py); a file with another fails."""

    source: ProfileSource
    model: str
    gpu: str | None = None
    vllm_version: str | None = None
    clocks: dict[str, Any] | None = None  # sm/mem clock MHz, power limit W, as read (never set)
    host: str | None = None
    created_iso: str | None = None
    command: str | None = None
    notes: str = ""


@dataclass(frozen=True)
class EngineLimits:
    """The vLLM scheduler limits the profile was measured with (and the simulator defaults to)."""

    max_num_batched_tokens: int
    max_num_seqs: int
    kv_capacity_tokens: int
    block_size: int = DEFAULT_BLOCK_SIZE
    source: str = ""
    # the largest step vLLM replays as a CUDA graph (planner/prefill_model.py); None: not modelled
    cudagraph_max_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_num_batched_tokens", "max_num_seqs", "kv_capacity_tokens", "block_size"):
            if int(getattr(self, name)) < 1:
                raise ProfileError(f"engine limit {name} must be >= 1, got {getattr(self, name)}")
        if self.cudagraph_max_tokens is not None and self.cudagraph_max_tokens < 1:
            raise ProfileError(f"cudagraph_max_tokens must be >= 1 or None, got {self.cudagraph_max_tokens}")
        if self.max_num_seqs > self.max_num_batched_tokens:
            raise ProfileError(
                f"max_num_seqs ({self.max_num_seqs}) > max_num_batched_tokens "
                f"({self.max_num_batched_tokens}): vLLM refuses this; lower max_num_seqs"
            )

    @property
    def kv_capacity_blocks(self) -> int:
        return self.kv_capacity_tokens // self.block_size


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------


def experts_touched(batch: float | np.ndarray, routing: MoeRouting) -> float | np.ndarray:
    """Expected distinct experts per layer a batch of `batch` tokens is routed to (uniform routing: each
    token picks `per_token` distinct experts of `experts`, independently of the others)."""
    e, k = routing.experts, routing.per_token
    return e * (1.0 - (1.0 - k / e) ** np.asarray(batch, dtype=float))


@dataclass(frozen=True)
class DecodeModel:
    fit: Fit
    routing: MoeRouting | None = None  # a mixture-of-experts model's routing (adds the experts term)

    def _coef(self, feature: str) -> float:
        return self.fit.coefficient(feature) if feature in self.fit.features else 0.0

    @property
    def terms(self) -> tuple[float, float, float, float]:
        """(a, b, c, d) of a + b*batch + c*context_sum + d*batch^2; d = 0 in a schema-2 fit."""
        a, b, c, d = (self._coef(f) for f in DECODE_FEATURES)
        return a, b, c, d

    @property
    def expert_s(self) -> float:
        """e: seconds per expert touched per layer (0 for a dense model)."""
        return self._coef(MOE_FEATURE) if self.routing else 0.0

    def batch_s(self, batch: int) -> float:
        """The part of a decode step that depends on the batch size alone: b*B + d*B^2 + e*touched(B)."""
        _, b, _, d = self.terms
        moe = self.expert_s * float(experts_touched(batch, self.routing)) if self.routing else 0.0
        return b * batch + d * batch * batch + moe

    def step_s(self, batch: int, context_sum: float) -> float:
        a, _, c, _ = self.terms
        return a + c * context_sum + self.batch_s(batch)

    def token_floor_s(self, max_batch: float) -> float:
        """A lower bound on a decode step's fixed share per token, min over batches B <= max_batch of
        (a + e*touched(B))/B + d*B (the b and c terms are paid per token at any batch)."""
        a, _, _, d = self.terms
        if not self.routing:
            best = min(max_batch, max(1.0, math.sqrt(a / d))) if d > 0 else max_batch
            return a / best + d * best
        bs = np.arange(1, math.ceil(max_batch) + 1, dtype=float)
        per_token = (a + self.expert_s * experts_touched(bs, self.routing)) / bs + d * bs
        return float(np.min(per_token))


@dataclass(frozen=True)
class KvTransferModel:
    """KV transfer time per request: latency + prompt_tokens * bytes_per_token / bandwidth; the prefill
    side's own latency per request (`prefill_overhead_s`: proxy hop and connector, beside the GPU); and
    whether the prefill instance holds a finished prompt until the end of its next step (`prefill_hold`,
    see planner/engine.py)."""

    latency_s: float
    bytes_per_token: float
    bandwidth_bytes_per_s: float
    source: str
    fit: Fit | None = None
    prefill_overhead_s: float = 0.0
    prefill_overhead_source: str = "not measured: none modelled"
    prefill_hold: bool = False
    prefill_hold_source: str = "not measured: a finished prompt leaves at once"

    def transfer_s(self, prompt_tokens: int) -> float:
        return self.latency_s + prompt_tokens * self.bytes_per_token / self.bandwidth_bytes_per_s


@dataclass(frozen=True)
class FrontendModel:
    """API-server time per request, beside the GPU: latency_s + per_token_s * prompt_tokens."""

    latency_s: float = 0.0
    per_token_s: float = 0.0
    source: str = "not measured: no API-server time modelled"
    fit: Fit | None = None
    points: tuple[tuple[int, float], ...] = ()  # (prompt tokens, API-server s) as measured

    def delay_s(self, prompt_tokens: float) -> float:
        return self.latency_s + self.per_token_s * prompt_tokens

    @property
    def zero(self) -> bool:
        return self.latency_s == 0.0 and self.per_token_s == 0.0


@dataclass(frozen=True)
class ServingLoopModel:
    """How vLLM's two loops stand between an engine step and the client (planner/engine.py):
    `async_scheduling`: the engine core schedules step k+1 while step k runs (vLLM's default since
    vllm-project/vllm#27614), so a request that reaches it during step k joins step k+2;
    `per_output_s`: the API server's time per output of a step, spent one stream after the other, a
    step's new requests last, so a first token leaves per_output_s x the step's outputs late, and
    request intake gets the share of its one event loop that streaming leaves."""

    async_scheduling: bool = False
    per_output_s: float = 0.0
    source: str = "not in this profile: scheduled in the next step, no output lag"

    def output_lag_s(self, outputs: int) -> float:
        """When the last of a step's `outputs` chunks leaves the API server, after the step ends."""
        return self.per_output_s * outputs


@dataclass(frozen=True)
class PowerModel:
    """Per-GPU power by state; every field None, with `reason`, when energy was not measurable."""

    idle_w: float | None
    prefill_w: float | None
    decode_fit: Fit | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.idle_w is not None and self.prefill_w is not None and self.decode_fit is not None

    def decode_w(self, batch: int) -> float:
        """Decode power at `batch` sequences, never below idle."""
        if not self.available:
            raise ProfileError(f"this profile has no power model: {self.reason}")
        assert self.decode_fit is not None and self.idle_w is not None
        return max(self.idle_w, self.decode_fit.predict((1.0, math.log(max(batch, 1)))))


# ---------------------------------------------------------------------------------------------------------
# The profile
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    provenance: Provenance
    engine: EngineLimits
    prefill: PrefillModel
    decode: DecodeModel
    kv_transfer: KvTransferModel
    power: PowerModel
    prefill_points: tuple[PrefillPoint, ...] = ()
    decode_points: tuple[DecodePoint, ...] = ()
    power_points: tuple[PowerPoint, ...] = ()
    kv_points: tuple[KvPoint, ...] = ()
    frontend: FrontendModel = FrontendModel()
    loop: ServingLoopModel = ServingLoopModel()
    schema_version: int = field(default=SCHEMA_VERSION)

    def describe(self) -> str:
        p = self.provenance
        lines = [
            f"profile: {p.model} on {p.gpu or 'unknown device'} (vLLM {p.vllm_version or '?'}, {p.source}"
            f"{': scaled from another profile, not measured' if p.source == 'derived' else ''})",
            f"  engine: max_num_batched_tokens {self.engine.max_num_batched_tokens}, max_num_seqs "
            f"{self.engine.max_num_seqs}, KV {self.engine.kv_capacity_tokens} tokens"
            + _graph_text(self.engine.cudagraph_max_tokens),
            f"  prefill step s = {self.prefill.fit.describe()}",
            f"  decode step s = {self.decode.fit.describe()}" + _moe_text(self.decode.routing),
            f"  KV transfer: {1e3 * self.kv_transfer.latency_s:.2f} ms + "
            f"{self.kv_transfer.bytes_per_token:.0f} B/token at "
            f"{self.kv_transfer.bandwidth_bytes_per_s / 1e9:.0f} GB/s ({self.kv_transfer.source}); "
            f"prefill side {1e3 * self.kv_transfer.prefill_overhead_s:.2f} ms per request "
            f"({self.kv_transfer.prefill_overhead_source})",
            f"  API server: {1e3 * self.frontend.latency_s:.2f} ms + "
            f"{1e6 * self.frontend.per_token_s:.2f} us per prompt token ({self.frontend.source})",
        ]
        lp = self.loop
        lines.append(
            f"  serving loop: {'async' if lp.async_scheduling else 'synchronous'} scheduling, "
            f"{1e6 * lp.per_output_s:.1f} us per streamed output ({lp.source})"
        )
        pw = self.power
        if pw.available:
            assert pw.decode_fit is not None
            lines.append(
                f"  power W: idle {pw.idle_w:.0f}, prefill {pw.prefill_w:.0f}, "
                f"decode = {pw.decode_fit.describe()}"
            )
        else:
            lines.append(f"  power: not available ({pw.reason})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        pw = self.power
        kv = self.kv_transfer
        return {
            "kind": PROFILE_KIND,
            "schema_version": self.schema_version,
            "provenance": to_builtins(self.provenance),
            "engine": to_builtins(self.engine),
            "prefill": {
                "model": "step_s = a*steps + b*tokens + c*attention_pairs [+ e*eager_steps]",
                "fit": to_builtins(self.prefill.fit),
                "points": to_builtins(self.prefill_points),
            },
            "decode": {
                "model": "step_s = a + b*batch + c*context_sum + d*batch^2 [+ e*experts_touched(batch)]",
                "fit": to_builtins(self.decode.fit),
                "points": to_builtins(self.decode_points),
                "moe": to_builtins(self.decode.routing) if self.decode.routing else None,
            },
            "kv_transfer": {
                "model": "transfer_s = latency_s + prompt_tokens * bytes_per_token / bandwidth_bytes_per_s",
                "latency_s": kv.latency_s,
                "bytes_per_token": kv.bytes_per_token,
                "bandwidth_bytes_per_s": kv.bandwidth_bytes_per_s,
                "source": kv.source,
                "fit": to_builtins(kv.fit),
                "points": to_builtins(self.kv_points),
                "prefill_overhead_s": kv.prefill_overhead_s,
                "prefill_overhead_source": kv.prefill_overhead_source,
                "prefill_hold": kv.prefill_hold,
                "prefill_hold_source": kv.prefill_hold_source,
            },
            "frontend": {
                "model": "delay_s = latency_s + per_token_s * prompt_tokens (API server, beside the GPU)",
                "latency_s": self.frontend.latency_s,
                "per_token_s": self.frontend.per_token_s,
                "source": self.frontend.source,
                "fit": to_builtins(self.frontend.fit),
                "points": [{"prompt_tokens": n, "api_server_s": t} for n, t in self.frontend.points],
            },
            "serving_loop": to_builtins(self.loop),
            "power": {
                "model": "decode_w = p0 + p1*ln(batch), at least idle_w",
                "available": pw.available,
                "reason": pw.reason,
                "idle_w": pw.idle_w,
                "prefill_w": pw.prefill_w,
                "decode_fit": to_builtins(pw.decode_fit),
                "points": to_builtins(self.power_points),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if data.get("kind") != PROFILE_KIND:
            raise ProfileError('not a planner profile (no "kind": "planner-profile")')
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ProfileError(
                f"profile schema_version {version!r} is not one this planner reads ({READABLE_VERSIONS}); "
                "re-run `python -m planner profile` (raw points are kept, so a newer planner can refit)"
            )
        try:
            pre, dec, kv, pw = data["prefill"], data["decode"], data["kv_transfer"], data["power"]
            engine: EngineLimits = _typed(data["engine"], EngineLimits, "engine")
            return cls(
                provenance=_typed(data["provenance"], Provenance, "provenance"),
                engine=engine,
                prefill=PrefillModel(_typed(pre["fit"], Fit, "prefill.fit"), engine.cudagraph_max_tokens),
                decode=DecodeModel(
                    _typed(dec["fit"], Fit, "decode.fit"),
                    _typed(dec["moe"], MoeRouting, "decode.moe") if dec.get("moe") else None,
                ),
                kv_transfer=KvTransferModel(
                    latency_s=float(kv["latency_s"]),
                    bytes_per_token=float(kv["bytes_per_token"]),
                    bandwidth_bytes_per_s=float(kv["bandwidth_bytes_per_s"]),
                    source=str(kv["source"]),
                    fit=_typed(kv.get("fit"), Fit | None, "kv_transfer.fit"),  # type: ignore[arg-type]
                    prefill_overhead_s=float(kv.get("prefill_overhead_s", 0.0)),
                    prefill_overhead_source=str(kv.get("prefill_overhead_source", "schema 1: not measured")),
                    prefill_hold=bool(kv.get("prefill_hold", False)),
                    prefill_hold_source=str(kv.get("prefill_hold_source", "not in this profile: no hold")),
                ),
                frontend=_frontend(data.get("frontend")),
                loop=_typed(data.get("serving_loop") or {}, ServingLoopModel, "serving_loop"),
                power=PowerModel(
                    idle_w=pw["idle_w"],
                    prefill_w=pw["prefill_w"],
                    decode_fit=_typed(pw.get("decode_fit"), Fit | None, "power.decode_fit"),  # type: ignore[arg-type]
                    reason=pw.get("reason"),
                ),
                prefill_points=_typed(pre["points"], tuple[PrefillPoint, ...], "prefill.points"),
                decode_points=_typed(dec["points"], tuple[DecodePoint, ...], "decode.points"),
                power_points=_typed(pw["points"], tuple[PowerPoint, ...], "power.points"),
                kv_points=_typed(kv["points"], tuple[KvPoint, ...], "kv_transfer.points"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"malformed profile: {exc!r}") from exc

    def client_prefill_s(self, prompt_tokens: int) -> float:
        """A prompt alone as a client sees it: API-server time + its prefill steps."""
        budget = self.engine.max_num_batched_tokens
        return self.frontend.delay_s(prompt_tokens) + self.prefill.request_s(prompt_tokens, budget)

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return out


def _graph_text(graph_tokens: int | None) -> str:
    return "" if graph_tokens is None else f", CUDA graphs for steps of <= {graph_tokens} tokens"


def _moe_text(routing: MoeRouting | None) -> str:
    if routing is None:
        return ""
    e, k = routing.experts, routing.per_token
    return f"; MoE: experts_touched = {e}*(1-(1-{k}/{e})^batch) per layer"


def _typed(data: Any, cls: Any, where: str) -> Any:
    """A part of a profile file as its type: the schema's msgspec conversion (one way to read JSON)."""
    try:
        return convert(data, cls, f"profile {where}")
    except SchemaError as exc:
        raise ProfileError(str(exc)) from exc


def _frontend(data: dict[str, Any] | None) -> FrontendModel:
    if not data:
        return FrontendModel(source="schema 1 profile: not measured")
    return FrontendModel(
        float(data["latency_s"]),
        float(data["per_token_s"]),
        str(data["source"]),
        _typed(data.get("fit"), Fit | None, "frontend.fit"),  # type: ignore[arg-type]
        tuple((int(p["prompt_tokens"]), float(p["api_server_s"])) for p in data.get("points", ())),
    )


def load_profile(path: str | Path) -> Profile:
    p = Path(path)
    if not p.is_file():
        raise ProfileError(f"no profile at {p}; make one with `python -m planner profile --endpoint URL`")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{p} is not valid JSON: {exc}") from exc
    return Profile.from_dict(data)


# ---------------------------------------------------------------------------------------------------------
# Fitting raw points into a profile
# ---------------------------------------------------------------------------------------------------------


def fit_prefill(
    points: Sequence[PrefillPoint],
    budget: int,
    frontend: FrontendModel | None = None,
    graph_tokens: int | None = None,
) -> PrefillModel:
    """Steps fitted to each point's latency less its API-server time (the engine's share); with the
    graph bound `graph_tokens` the eager-step term where the points allow it (prefill_model.prefill_rows)."""
    fe = frontend or FrontendModel()
    features, rows = prefill_rows([p.prompt_tokens for p in points], budget, graph_tokens)
    engine = [max(p.latency_s - fe.delay_s(p.prompt_tokens), 0.0) for p in points]
    return PrefillModel(fit_nonnegative(features, rows, engine, relative=True), graph_tokens)


def fit_decode(points: Sequence[DecodePoint], routing: MoeRouting | None = None) -> DecodeModel:
    """Step time over batch and context; the batch^2 term only with enough points (>= 4) to fit it; for
    an MoE model (`routing`) the experts-touched term too (with >= 5 points)."""
    features = DECODE_FEATURES if len(points) >= len(DECODE_FEATURES) else DECODE_FEATURES[:3]
    rows = [(1.0, float(p.batch), p.context_sum, float(p.batch) ** 2)[: len(features)] for p in points]
    moe = routing if len(points) > len(DECODE_FEATURES) else None
    if moe:
        features = (*features, MOE_FEATURE)
        rows = [(*r, float(experts_touched(p.batch, moe))) for r, p in zip(rows, points, strict=True)]
    fit = fit_nonnegative(features, rows, [p.step_s for p in points], relative=True)
    return DecodeModel(fit, moe)


def fit_power(points: Sequence[PowerPoint], reason: str | None = None) -> PowerModel:
    """Idle and prefill W are averages over their points; decode W is fitted over the batch sizes."""
    by_state: dict[str, list[PowerPoint]] = {}
    for p in points:
        by_state.setdefault(p.state, []).append(p)
    missing = [s for s in ("idle", "prefill", "decode") if s not in by_state]
    if missing:
        return PowerModel(None, None, None, reason or f"no power measured in state(s) {', '.join(missing)}")

    def mean_w(state: str) -> float:
        pts = by_state[state]
        return sum(p.watts * p.seconds for p in pts) / sum(p.seconds for p in pts)

    dec = by_state["decode"]
    rows = [(1.0, math.log(max(p.batch or 1, 1))) for p in dec]
    return PowerModel(
        idle_w=mean_w("idle"),
        prefill_w=mean_w("prefill"),
        decode_fit=fit_nonnegative(DECODE_POWER_FEATURES, rows, [p.watts for p in dec]),
        reason=None,
    )


def build_profile(
    provenance: Provenance,
    engine: EngineLimits,
    prefill_points: Sequence[PrefillPoint],
    decode_points: Sequence[DecodePoint],
    kv_transfer: KvTransferModel,
    power_points: Sequence[PowerPoint] = (),
    power_reason: str | None = None,
    kv_points: Sequence[KvPoint] = (),
    frontend: FrontendModel | None = None,
    routing: MoeRouting | None = None,
    loop: ServingLoopModel | None = None,
) -> Profile:
    """Fit every model from raw points and keep the points (`routing`: an MoE model's, see fit_decode)."""
    frontend = frontend or FrontendModel()
    return Profile(
        provenance=provenance,
        engine=engine,
        prefill=fit_prefill(
            prefill_points, engine.max_num_batched_tokens, frontend, engine.cudagraph_max_tokens
        ),
        decode=fit_decode(decode_points, routing),
        kv_transfer=kv_transfer,
        power=fit_power(power_points, power_reason),
        prefill_points=tuple(prefill_points),
        decode_points=tuple(decode_points),
        power_points=tuple(power_points),
        kv_points=tuple(kv_points),
        frontend=frontend,
        loop=loop or ServingLoopModel(),
    )
