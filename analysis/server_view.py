"""vLLM's own view of a run, per instance: its request phases from the stored /metrics deltas.

Per instance (named by its role in the serving setup): mean (sum / count) and p50 / p90 (from the
histogram buckets) of queue, prefill, TTFT, decode and inference time, the mean inter-token gap, and the
share of prompt tokens that came from external KV (the decode side of a P/D pair). vLLM's definitions
(v1 metrics): queue = queued -> first scheduled; prefill = first scheduled -> first token; decode = first
token -> last token; inference = prefill + decode; TTFT = arrival at the API server -> first token, so
TTFT - queue - prefill is the front end (HTTP, tokenization, hand-over to the engine). A request's prefill
time spans the whole engine step that produced its first token, shared with every request batched in
that step.

Whatever is missing says why: no server metrics for the run, a scrape error, a series this vLLM does not
export or the runner did not keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from analysis.prometheus import Histogram, Quantile, counter, has_family, histogram
from analysis.runs import NA
from experiments.schema import RunResult
from experiments.schema.vocabulary import kind_of_mode

MS = 1000.0
PHASES: tuple[tuple[str, str], ...] = (
    ("queue", "vllm:request_queue_time_seconds"),
    ("prefill", "vllm:request_prefill_time_seconds"),
    ("ttft", "vllm:time_to_first_token_seconds"),
    ("decode", "vllm:request_decode_time_seconds"),
    ("inference", "vllm:request_inference_time_seconds"),
    ("e2e", "vllm:e2e_request_latency_seconds"),
    ("itl", "vllm:inter_token_latency_seconds"),
)
SERIES = dict(PHASES)
PROMPT_BY_SOURCE = "vllm:prompt_tokens_by_source_total"
EXTERNAL = "external_kv_transfer"
NO_PROMPTS = NA("no prompt tokens counted")
NO_METRICS = "run stored no server metrics (the runner was given no --server-metrics URL)"


@dataclass(frozen=True)
class PhaseStats:
    """One phase on one instance, in ms: mean over the run's requests and bucket quantiles."""

    count: float
    mean: float | None
    p50: Quantile | None
    p90: Quantile | None

    @classmethod
    def of(cls, h: Histogram) -> PhaseStats:
        def q(x: float) -> Quantile | None:
            found = h.quantile(x)
            return None if found is None else found.scaled(MS)

        return cls(count=h.count, mean=None if h.mean is None else h.mean * MS, p50=q(0.5), p90=q(0.9))


Phase = PhaseStats | NA


@dataclass
class InstanceView:
    """vLLM's view of one instance over a run."""

    url: str
    role: str  # prefill | decode | serving | unknown
    name: str | None = None
    role_source: str = "serving setup"
    phases: dict[str, Phase] = field(default_factory=dict)
    prompt_tokens: float | None = None
    external_kv_tokens: float | None = None
    external_share: float | NA = NO_PROMPTS
    error: str | None = None  # the whole instance is unavailable

    @property
    def label(self) -> str:
        return f"{self.name or self.url} ({self.role})"

    def phase(self, key: str) -> Phase:
        return self.phases.get(key, NA(self.error or f"{key} not read"))

    def mean(self, key: str) -> float | None:
        p = self.phase(key)
        return p.mean if isinstance(p, PhaseStats) else None

    @property
    def requests(self) -> float | None:
        """Requests the instance finished in the run (TTFT observations)."""
        p = self.phase("ttft")
        return p.count if isinstance(p, PhaseStats) else None

    @property
    def front_end_ms(self) -> float | None:
        """TTFT - queue - prefill (means): the API server's part of the instance's TTFT."""
        ttft, queue, prefill = self.mean("ttft"), self.mean("queue"), self.mean("prefill")
        if ttft is None or queue is None or prefill is None:
            return None
        return ttft - queue - prefill


def phase_stats(deltas: Mapping[str, float], key: str) -> Phase:
    """A phase from the deltas, or why it is missing."""
    name = SERIES[key]
    h = histogram(deltas, name)
    if h is None:
        if not deltas:
            return NA("no metric changed on this server during the run")
        return NA(f"not stored: {name} (not exported by this vLLM or not kept by the runner)")
    if h.count <= 0:
        return NA("no observations")
    return PhaseStats.of(h)


def _external_share(deltas: Mapping[str, float]) -> tuple[float | None, float | None, float | NA]:
    """(prompt tokens, external KV tokens, share): from prompt_tokens_by_source, else (older vLLM) from the
    external prefix cache hits over prompt tokens."""
    if has_family(deltas, PROMPT_BY_SOURCE):
        total = counter(deltas, PROMPT_BY_SOURCE) or 0.0
        ext = counter(deltas, PROMPT_BY_SOURCE, source=EXTERNAL) or 0.0
        return total, ext, ext / total if total else NO_PROMPTS
    total = counter(deltas, "vllm:prompt_tokens_total")
    hits = counter(deltas, "vllm:external_prefix_cache_hits_total")
    if total and hits is not None:
        return total, hits, hits / total
    return total, None, NA(f"not stored: {PROMPT_BY_SOURCE} (a vLLM older than this counter?)")


def _roles(result: RunResult) -> dict[str, tuple[str, str | None]]:
    setup = result.metadata.serving_setup
    if setup is None:
        return {}
    return {i.url.rstrip("/"): (i.role, i.name) for i in setup.instances if i.url}


def instance_views(result: RunResult) -> list[InstanceView]:
    """One view per server the run scraped, in the serving setup's order (prefill before decode).

    Without a recorded setup (older results), or when no scraped URL is one of the setup's, a
    disaggregated run's instance whose prompt tokens came mostly from external KV is taken as the decode
    side and the others as prefill; said in role_source.
    """
    roles = _roles(result)
    views = []
    for url, metrics in result.server_metrics.items():
        role, name = roles.get(url.rstrip("/"), ("unknown", None))
        view = InstanceView(url=url, role=role, name=name, role_source="serving setup")
        if metrics.error:
            view.error = f"scrape failed: {metrics.error}"
        else:
            d = metrics.deltas
            view.phases = {key: phase_stats(d, key) for key, _ in PHASES}
            view.prompt_tokens, view.external_kv_tokens, view.external_share = _external_share(d)
        views.append(view)
    if not roles or all(v.role == "unknown" for v in views):
        _infer_roles(result, views)
    order = {"prefill": 0, "serving": 1, "decode": 2}
    return sorted(views, key=lambda v: (order.get(v.role, 3), v.url))


def _infer_roles(result: RunResult, views: list[InstanceView]) -> None:
    mode = result.metadata.mode
    for v in views:
        if kind_of_mode(mode) == "xpyd":
            share = v.external_share
            v.role = "decode" if isinstance(share, float) and share > 0.5 else "prefill"
            v.role_source = "inferred from external KV tokens (no serving setup names this URL)"
        else:
            v.role, v.role_source = "serving", f"mode {mode} (no serving setup names this URL)"


def role_views(result: RunResult, role: str) -> list[InstanceView]:
    return [v for v in instance_views(result) if v.role == role and v.error is None]


def pooled_mean(views: list[InstanceView], key: str) -> float | None:
    """The mean of a phase over several instances, weighted by their request counts."""
    num = den = 0.0
    for v in views:
        p = v.phase(key)
        if isinstance(p, PhaseStats) and p.mean is not None:
            num += p.mean * p.count
            den += p.count
    return num / den if den else None


def missing_reason(result: RunResult) -> str | None:
    """Why a run has no server view at all; None when it has one."""
    if not result.server_metrics:
        return NO_METRICS
    if all(m.error for m in result.server_metrics.values()):
        return "every scrape failed: " + "; ".join(str(m.error) for m in result.server_metrics.values())
    return None
