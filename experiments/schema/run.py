"""How a run was configured and where its numbers came from: config, sweep, provenance, metadata."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.arrivals import ArrivalConfig
from experiments.schema.base import computed
from experiments.schema.setup import ServingSetup
from experiments.schema.vocabulary import Mode, SetupKind, kind_of_mode

WORKLOADS: tuple[str, ...] = ("random", "fixed", "sharegpt", "trace")
# What a trace replay does with a request longer than the served context: cut its prompt, or leave it out.
OVERLENGTH_POLICIES: tuple[str, ...] = ("clip", "skip")


@dataclass(slots=True, kw_only=True)
class WorkloadConfig:
    """Which prompts: random of exact lengths (N or a MIN:MAX range), one fixed prompt, a ShareGPT file,
    or a trace replayed at its own times; seeded."""

    kind: str = "random"
    num_requests: int = 100
    input_len: int | tuple[int, int] | None = 1024  # None: the lengths come from a trace
    output_len: int | tuple[int, int] | None = 128
    dataset: str | None = None
    prompt: str | None = None
    trace_time_scale: float | None = 1.0  # None: set by trace_rate
    trace_rate: float | None = None  # a trace rescaled to this mean offered rate (req/s)
    trace_start_s: float = 0.0  # a trace's slice: from this second of trace time ...
    trace_duration_s: float | None = None  # ... for this long
    trace_first_row: int = 0  # or from this row (time order)
    max_model_len: int | None = None  # the served context a trace's rows must fit (None: the endpoint's)
    overlength: str = "clip"  # what a longer row gets: OVERLENGTH_POLICIES
    seed: int = 0


@dataclass(slots=True, kw_only=True)
class TraceInfo:
    """What a trace replay sent (experiments.traces.select_trace): its slice, speed and over-length count.

    `trace_rate` is the slice's own mean rate, (requests - 1) / `trace_span_s`; `offered_rate` the same
    after `time_scale` (the nominal load of the replay; the summary's `arrival_rate` is what the client
    realized). `prefix_reuse`: share of prompt tokens an unbounded prefix cache could serve (hash ids)."""

    path: str
    rows_read: int
    zero_length_skipped: int = 0
    first_row: int = 0
    start_s: float = 0.0
    requests: int = 0
    trace_span_s: float = 0.0
    trace_rate: float | None = None
    time_scale: float = 1.0
    offered_rate: float | None = None
    max_model_len: int | None = None
    overlength: str = "clip"
    clipped: int = 0
    clipped_tokens: int = 0
    skipped: int = 0
    prefix_reuse: float | None = None
    block_size: int | None = None  # prompt tokens per hash id


@dataclass(slots=True, kw_only=True)
class Sweep:
    """A run's place in a rate sweep (`run_experiment.py --sweep-rates`): one id for all its runs."""

    id: str
    rates: list[float] = field(default_factory=list)
    rate: float | None = None  # this run's rate
    seed_offset: int = 0  # each load draws fresh prompts: seed = base seed + offset


@dataclass(slots=True, kw_only=True)
class RunConfig:
    """Everything the runner was told: target, workload, arrivals, SLOs, monitoring, output."""

    mode: Mode
    endpoint: str
    workload: WorkloadConfig
    arrival: ArrivalConfig
    model: str | None = None
    tokenizer: str | None = None
    api: str = "completions"
    ignore_eos: bool = True
    request_timeout_s: float = 600.0
    slo: dict[str, float] | None = None
    output_dir: Path = Path("results")
    tag: str = ""
    run_name: str | None = None
    gpu_ids: list[int] = field(default_factory=list)
    gpu_roles: dict[int, str] = field(default_factory=dict)
    monitor_backend: str = "auto"  # auto | nvml | sim | none
    monitor_interval_s: float = 0.1
    # seconds between the sampler's energy-counter reads; None: as often as its CPU budget allows
    monitor_counter_every_s: float | None = None
    idle_seconds: float = 5.0
    server_metrics_urls: list[str] = field(default_factory=list)
    launch_plan: Path | None = None  # launch.json (or its run dir); default: found by endpoint
    sweep: Sweep | None = None
    defaults: str | None = None  # which defaults filled the flags left out, and why (experiments.defaults)

    @property
    def offered_rate(self) -> float | None:
        """Open-loop requests/s (inf: all at once); None for closed loop and trace replay."""
        if self.arrival.kind in ("closed", "trace"):
            return None
        rate = self.arrival.rate if self.arrival.rate is not None else (self.sweep and self.sweep.rate)
        return math.inf if rate is None else float(rate)


@dataclass(slots=True, kw_only=True)
class GpuInfo:
    """One GPU of the host as NVML reported it at the start (read only)."""

    index: int
    name: str | None = None
    uuid: str | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    max_sm_clock_mhz: int | None = None
    persistence_mode: int | None = None


@dataclass(slots=True, kw_only=True)
class GpuInventory:
    available: bool
    driver: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)
    reason: str | None = None  # why not available


@dataclass(slots=True, kw_only=True)
class ClockAnchor:
    """One (epoch, monotonic) pair read together: joins every monotonic time with wall clocks."""

    epoch_ns: int
    mono_ns: int


@dataclass(slots=True, kw_only=True)
class Provenance:
    """Where a number came from: command line, host, versions, git commit, GPUs, start time."""

    command_line: list[str] = field(default_factory=list)
    hostname: str | None = None
    platform: str | None = None
    python: str | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    git_commit: str | None = None
    # sha256 of the testbed's own Python sources as they ran: names the code where .git is absent or stale
    source_digest: str | None = None
    gpu_inventory: GpuInventory = field(default_factory=lambda: GpuInventory(available=False))
    start_epoch_ns: int = 0
    start_iso: str = ""
    clock_anchor: ClockAnchor | None = None


@dataclass(slots=True, kw_only=True)
class RunMetadata(Provenance):
    """Provenance plus what was driven: mode, endpoint, model, serving setup, config."""

    mode: Mode
    endpoint: str
    config: RunConfig
    model: str | None = None
    tokenizer: str | None = None
    tokenizer_source: str | None = None  # "local" or the server URL whose /tokenize counted the prompts
    served_models: list[dict[str, Any]] = field(default_factory=list)  # the endpoint's /v1/models
    serving_setup: ServingSetup | None = None  # None in results older than the setup record
    run_dir: str | None = None
    end_epoch_ns: int | None = None
    trace: TraceInfo | None = None  # a trace replay's slice, speed and over-length counts

    @classmethod
    def of(cls, provenance: Provenance, **run: Any) -> RunMetadata:
        """Provenance collected at the start plus the run's fields."""
        return cls(**{name: getattr(provenance, name) for name in Provenance.__dataclass_fields__}, **run)

    @property
    def setup_name(self) -> str:
        """The serving setup's label, or the mode for results that did not record it."""
        return self.serving_setup.name if self.serving_setup is not None else self.mode

    @property
    def setup_kind(self) -> SetupKind:
        """The serving setup's kind, or its mode's for results that did not record a setup."""
        return self.serving_setup.kind if self.serving_setup is not None else kind_of_mode(self.mode)


@dataclass(slots=True, kw_only=True)
class ServerMetrics:
    """One vLLM server's Prometheus deltas over the run (`name{labels}` -> change), or why not."""

    deltas: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @computed
    def prefix_cache_hit_rate(self) -> float | None:
        """Share of prompt tokens this server served from its local prefix cache over the run (vLLM's
        prefix_cache_hits / prefix_cache_queries), None where it counted no query."""
        hits = sum(v for k, v in self.deltas.items() if k.startswith("vllm:prefix_cache_hits"))
        queries = sum(v for k, v in self.deltas.items() if k.startswith("vllm:prefix_cache_queries"))
        return hits / queries if queries else None
