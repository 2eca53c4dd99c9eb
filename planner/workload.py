"""Request lengths and arrival times for the simulator, from the runner's own generators.

Lengths come from experiments.workloads (random, fixed-length, trace, ShareGPT) and arrival times from
experiments.arrivals.schedule, so a simulated run draws the same lengths and offsets as a measured run
with the same seed. The generators build prompt text; the simulator needs only token counts, so
random, fixed and trace workloads run through `LengthOnlyTokenizer`: a one-token vocabulary whose
"text" is an empty string that remembers its token count. Their sampling logic runs unchanged (same
RNG draws, same lengths); no prompt text is ever held. ShareGPT must count real tokens: it takes the
model's tokenizer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from experiments.arrivals import OPEN_LOOP_KINDS, ArrivalConfig, schedule
from experiments.schema import TraceInfo
from experiments.traces import TraceReplay, TraceSelection, prefix_chains, select_trace
from experiments.workloads import (
    RequestSpec,
    WorkloadError,
    fixed_workload,
    random_workload,
    sharegpt_workload,
)
from planner.simulate import Prefix

WORKLOAD_KINDS = ("random", "fixed", "trace", "sharegpt")
ARRIVAL_KINDS = (*OPEN_LOOP_KINDS, "trace")


class _LengthText(str):
    """An empty string standing for a prompt of `tokens` tokens."""

    tokens: int


class LengthOnlyTokenizer:
    """Just enough of experiments.workloads.TokenizerLike to draw lengths: every id is 0, text is empty."""

    vocab_size = 1
    special_ids: set[int] = set()  # noqa: RUF012 - the protocol's attribute, never mutated

    def decode(self, ids: list[int]) -> str:
        text = _LengthText()
        text.tokens = len(ids)
        return text

    def encode(self, text: str) -> list[int]:
        tokens = getattr(text, "tokens", None)
        if tokens is None:
            raise WorkloadError("the planner draws lengths only; give an input length, not prompt text")
        return [0] * tokens


@dataclass(frozen=True)
class WorkloadSpec:
    """What to draw, in the runner's terms (`run_experiment.py --workload/--input-len/...`)."""

    kind: str = "random"
    num_requests: int = 1000
    input_len: int | tuple[int, int] = 2048
    output_len: int | tuple[int, int] = 256
    dataset: str | None = None
    tokenizer: str | None = None  # ShareGPT only: a model directory
    trace_time_scale: float | None = None  # trace replays (experiments.traces.TraceReplay): its speed ...
    trace_rate: float | None = None  # ... or the mean rate it is rescaled to
    trace_start_s: float = 0.0
    trace_duration_s: float | None = None
    trace_first_row: int = 0
    max_model_len: int | None = None
    overlength: str = "clip"
    seed: int = 0

    @property
    def replay(self) -> TraceReplay:
        """The trace replay this spec asks for (`num_requests` rows at most)."""
        return TraceReplay(
            time_scale=None if self.trace_rate is not None else self.trace_time_scale,
            rate=self.trace_rate,
            start_s=self.trace_start_s,
            duration_s=self.trace_duration_s,
            first_row=self.trace_first_row,
            count=self.num_requests,
            max_model_len=self.max_model_len,
            overlength=self.overlength,
        )

    def describe(self) -> str:
        if self.kind == "random":
            return f"random {self.input_len} in / {self.output_len} out"
        if self.kind == "fixed":
            return f"fixed {self.input_len} in / {self.output_len} out"
        if self.kind == "trace":
            speed = f"x{self.trace_time_scale:g}" if self.trace_time_scale else "its own times"
            speed = f"mean {self.trace_rate:g} req/s" if self.trace_rate else speed
            return f"trace {self.dataset} ({speed}, from {self.trace_start_s or self.trace_first_row:g})"
        return f"{self.kind} {self.dataset}"


@dataclass(frozen=True)
class Workload:
    spec: WorkloadSpec
    specs: tuple[RequestSpec, ...]
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    trace: TraceInfo | None = None  # a trace replay's slice, speed and over-length counts
    prefix: Prefix | None = None  # a trace's prompt blocks (prefix reuse), for the prefix caches

    def __len__(self) -> int:
        return len(self.specs)

    def repeated(self, times: int) -> Workload:
        """The same requests `times` over, renumbered (a longer run of the same length mix)."""
        n = len(self.specs)
        specs = tuple(dataclasses.replace(s, index=k * n + s.index) for k in range(times) for s in self.specs)
        prefix = None
        if self.prefix is not None:  # each repeat's prompts are new: offset its block nodes
            top = 1 + max((max(c) for c in self.prefix.chains if c), default=0)
            chains = tuple(tuple(x + k * top for x in c) for k in range(times) for c in self.prefix.chains)
            prefix = Prefix(chains, self.prefix.block_tokens)
        return Workload(
            dataclasses.replace(self.spec, num_requests=n * times),
            specs,
            np.tile(self.prompt_tokens, times),
            np.tile(self.output_tokens, times),
            self.trace,
            prefix,
        )

    def arrivals(self, kind: str, rate: float | None, burstiness: float = 1.0, seed: int = 0) -> np.ndarray:
        """Arrival offsets (s) from experiments.arrivals.schedule; "trace" replays the trace's times, rescaled
        to a mean of `rate` req/s when given."""
        if kind not in ARRIVAL_KINDS:
            raise ValueError(
                f"arrival kind {kind!r} cannot be simulated; use {', '.join(ARRIVAL_KINDS)} "
                "(closed-loop users are not modeled)"
            )
        cfg = ArrivalConfig(kind, rate=None if kind == "trace" else rate, burstiness=burstiness, seed=seed)  # type: ignore[arg-type]
        offsets = np.asarray(schedule(self.specs, cfg), dtype=float)
        if kind == "trace" and rate is not None:  # the replay's own times, rescaled to a mean of `rate`
            own = self.trace.offered_rate if self.trace is not None else None
            if not own:
                raise ValueError("this workload has no trace times to rescale; give a trace workload")
            offsets *= own / rate
        if not np.all(np.isfinite(offsets)) or np.any(np.diff(offsets) < 0):
            raise ValueError("arrival offsets must be finite and sorted")
        return offsets


def _length(spec: int | tuple[int, int]) -> int | tuple[int, int]:
    return spec if isinstance(spec, int) else (int(spec[0]), int(spec[1]))


@lru_cache(maxsize=16)
def build_workload(spec: WorkloadSpec) -> Workload:
    """Draw the workload's lengths (cached: searches reuse one workload at every rate and setup)."""
    n, seed = spec.num_requests, spec.seed
    if spec.kind == "random":
        specs = random_workload(
            LengthOnlyTokenizer(), n, _length(spec.input_len), _length(spec.output_len), seed
        )
    elif spec.kind == "fixed":
        if not isinstance(spec.input_len, int):
            raise WorkloadError("a fixed workload takes one input length, not a range")
        specs = fixed_workload(LengthOnlyTokenizer(), n, None, spec.input_len, _length(spec.output_len), seed)
    elif spec.kind == "trace":
        if not spec.dataset:
            raise WorkloadError("a trace workload needs --dataset PATH (Azure CSV or Mooncake JSONL)")
        return trace_lengths(spec, select_trace(spec.dataset, spec.replay))
    elif spec.kind == "sharegpt":
        if not (spec.dataset and spec.tokenizer):
            raise WorkloadError("a ShareGPT workload needs --dataset PATH and --tokenizer MODEL_DIR")
        from experiments.model_dir import load_tokenizer

        specs = sharegpt_workload(spec.dataset, load_tokenizer(spec.tokenizer), n, seed)
    else:
        raise WorkloadError(f"unknown workload {spec.kind!r}; use {', '.join(WORKLOAD_KINDS)}")
    return from_specs(spec, specs)


def trace_lengths(spec: WorkloadSpec, selection: TraceSelection) -> Workload:
    """A trace replay's lengths and arrival offsets (no prompt text), with its prompt blocks if any."""
    specs = [
        RequestSpec(index=i, prompt="", input_tokens=r.input_len, output_tokens=r.output_len, arrival_s=t)
        for i, (r, t) in enumerate(zip(selection.rows, selection.arrivals_s, strict=True))
    ]
    info = selection.info
    prefix = None
    if info.block_size is not None:
        chains = tuple(prefix_chains(selection.rows, info.block_size))
        prefix = Prefix(chains, info.block_size)
    return dataclasses.replace(from_specs(spec, specs), trace=info, prefix=prefix)


def from_specs(spec: WorkloadSpec, specs: Sequence[RequestSpec]) -> Workload:
    prompt = np.array([s.input_tokens for s in specs], dtype=np.int64)
    output = np.array([s.output_tokens for s in specs], dtype=np.int64)
    if np.any(prompt < 1) or np.any(output < 1):
        raise WorkloadError("every request needs >= 1 prompt and >= 1 output token")
    return Workload(spec, tuple(specs), prompt, output)


def fixed_lengths(prompt_tokens: Sequence[int], output_tokens: Sequence[int]) -> Workload:
    """A workload of given lengths (tests, analytic cases); arrivals still come from `schedule`."""
    if len(prompt_tokens) != len(output_tokens):
        raise ValueError("prompt and output lengths must have one entry per request")
    specs = [
        RequestSpec(index=i, prompt="", input_tokens=int(p), output_tokens=int(o))
        for i, (p, o) in enumerate(zip(prompt_tokens, output_tokens, strict=True))
    ]
    return from_specs(WorkloadSpec(kind="fixed", num_requests=len(specs)), specs)
