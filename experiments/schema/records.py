"""One request as the streaming client measured it, and its metrics with vLLM's definitions.

Definitions (vLLM `benchmarks/serve.py` `calculate_metrics`): a request *succeeded* when its stream
finished and carried at least one token; TTFT = first token - sent; E2EL = last text chunk - sent (not the
end of the stream); ITL = every gap between consecutive text chunks; TPOT = (E2EL - TTFT) / (output tokens
- 1), only with more than one output token. Failed requests have no latency metrics. Times are monotonic
ns; `sent_epoch_ns` / `end_epoch_ns` join them with wall clocks (and the power log).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from experiments.schema.attribution import RequestEnergy
from experiments.schema.base import computed

NS_PER_MS = 1_000_000
NO_TOKEN = "no output token received"
NO_TIMES = "record lacks sent_mono_ns or end_mono_ns"
CANCELLED = "cancelled: the run was interrupted (Ctrl-C or SIGTERM) while this request was in flight"


@dataclass(slots=True, kw_only=True)
class StageTimes:
    """The proxy's timing of one request, as it sent it (proxy/timing.py `StageTiming.record`).

    Durations in ms: prefill leg, decode send -> first chunk (KV transfer + decode queue), decode send ->
    end, and the proxy's own time. `t_<stage>_mono_ns` / `_epoch_ns` are the proxy's stamps.
    """

    request_id: str | None = None
    connector: str | None = None
    endpoint: str | None = None
    stream: bool | None = None
    policy: str | None = None  # the proxy's per-request policy (proxy/policy.py)
    path: str | None = None  # the one it chose: split (P then D), local (D alone, no KV moved)
    prompt_tokens_counted: int | None = None  # the prompt's tokens as the policy counted them
    prefill_url: str | None = None
    decode_url: str | None = None
    status: int | None = None
    error: str | None = None
    chunks: int | None = None
    retries: int | None = None
    prefill_ms: float | None = None
    decode_first_chunk_ms: float | None = None
    decode_total_ms: float | None = None
    proxy_overhead_ms: float | None = None
    t_recv_mono_ns: int | None = None
    t_recv_epoch_ns: int | None = None
    t_prefill_start_mono_ns: int | None = None
    t_prefill_start_epoch_ns: int | None = None
    t_prefill_end_mono_ns: int | None = None
    t_prefill_end_epoch_ns: int | None = None
    t_decode_send_mono_ns: int | None = None
    t_decode_send_epoch_ns: int | None = None
    t_decode_first_chunk_mono_ns: int | None = None
    t_decode_first_chunk_epoch_ns: int | None = None
    t_decode_end_mono_ns: int | None = None
    t_decode_end_epoch_ns: int | None = None


def _ms(later_ns: int | None, earlier_ns: int | None) -> float | None:
    if later_ns is None or earlier_ns is None:
        return None
    return (later_ns - earlier_ns) / NS_PER_MS


@dataclass(slots=True, kw_only=True)
class Record:
    """One request: what was asked, when each byte came, what the server counted, how it ended.

    `ok` is the client's verdict (the stream ended with `data: [DONE]` and carried text); `succeeded` is
    vLLM's (ok and a first token); `error` is what went wrong as the client saw it. A request still in
    flight when the run was interrupted is `cancelled` (error `CANCELLED`), with what was timed until then:
    not a success, and not a failure of the server either. Warm-up requests are kept, tagged, and never
    `measured`.
    """

    index: int
    request_id: str | None = None
    warmup: bool = False
    input_tokens_expected: int | None = None
    output_tokens_expected: int | None = None
    scheduled_mono_ns: int | None = None
    sent_mono_ns: int | None = None
    sent_epoch_ns: int | None = None
    first_byte_mono_ns: int | None = None
    first_token_mono_ns: int | None = None
    end_mono_ns: int | None = None
    end_epoch_ns: int | None = None
    chunk_mono_ns: list[int] = field(default_factory=list)  # arrival of every chunk that carried text
    prompt_tokens: int | None = None  # the server's usage
    completion_tokens: int | None = None
    status: int | None = None  # HTTP status
    ok: bool = False
    error: str | None = None
    cancelled: bool = False  # in flight when the run was interrupted
    retries: int = 0  # sent again after its connection died before any response byte (experiments.client)
    retry_error: str | None = None  # what the retried attempt died of
    stages: StageTimes | None = None  # when the endpoint is our proxy
    energy: RequestEnergy | None = None  # its joules by phase (experiments.attribution); None: not attributed

    @computed
    def measured(self) -> bool:
        """Counts in the metrics (not warm-up)."""
        return not self.warmup

    @computed
    def succeeded(self) -> bool:
        """vLLM's success: the stream finished and carried a token (sent and end times known)."""
        return (
            self.ok
            and self.first_token_mono_ns is not None
            and self.sent_mono_ns is not None
            and self.end_mono_ns is not None
        )

    @computed
    def failure(self) -> str | None:
        """Why the request does not count as a success; None when it succeeded."""
        if self.succeeded:
            return None
        if self.ok:  # the client's ok without vLLM's: no token, or times missing
            return self.error or (NO_TOKEN if self.first_token_mono_ns is None else NO_TIMES)
        return self.error or "unknown error"

    @computed
    def ttft_ms(self) -> float | None:
        return _ms(self.first_token_mono_ns, self.sent_mono_ns) if self.succeeded else None

    @computed
    def e2el_ms(self) -> float | None:
        if not self.succeeded:
            return None
        last = self.chunk_mono_ns[-1] if self.chunk_mono_ns else self.end_mono_ns
        return _ms(last, self.sent_mono_ns)

    @computed
    def tpot_ms(self) -> float | None:
        n_out = self.output_tokens
        ttft, e2el = self.ttft_ms, self.e2el_ms
        if n_out is None or n_out < 2 or ttft is None or e2el is None:
            return None
        return (e2el - ttft) / (n_out - 1)

    def _gaps_ms(self) -> np.ndarray:
        """The chunk gaps in ms (each (later - earlier) / 1e6, as the definitions say); empty when failed."""
        if not self.succeeded or len(self.chunk_mono_ns) < 2:
            return np.zeros(0)
        return np.diff(np.array(self.chunk_mono_ns, dtype=np.int64)) / NS_PER_MS

    @property
    def itl_ms(self) -> list[float]:
        """Every gap between consecutive text chunks (ms); empty for a failed request."""
        return self._gaps_ms().tolist()

    @computed
    def itl_req_avg_ms(self) -> float | None:
        """Mean chunk gap of this request (None under two chunks)."""
        gaps = self._gaps_ms()
        return float(np.mean(gaps)) if gaps.size else None

    @computed
    def tbt_max_ms(self) -> float | None:
        """Longest chunk gap of this request (None under two chunks)."""
        gaps = self._gaps_ms()
        return float(gaps.max()) if gaps.size else None

    @computed
    def input_tokens(self) -> int | None:
        """Prompt tokens: the server's usage, else the workload's count (as vLLM falls back)."""
        if not self.succeeded:
            return None
        return self.prompt_tokens if self.prompt_tokens is not None else self.input_tokens_expected

    @computed
    def output_tokens(self) -> int | None:
        """Output tokens: the server's usage, else the number of text chunks."""
        if not self.succeeded:
            return None
        if self.completion_tokens is not None:
            return self.completion_tokens
        return max(len(self.chunk_mono_ns), 1)

    @computed
    def send_lateness_ms(self) -> float | None:
        """How late the client sent the request against its schedule (None when not scheduled)."""
        return _ms(self.sent_mono_ns, self.scheduled_mono_ns)


def chunk_counts(records: list[Record]) -> tuple[int, int]:
    """(text chunks, coalesced chunks) of `records`: a coalesced chunk arrived in the same network read as
    the chunk before it (an equal timestamp). The summary's `chunks` and `coalesced_chunks`."""
    chunks = sum(len(r.chunk_mono_ns) for r in records)
    coalesced = sum(
        int(np.count_nonzero(np.diff(np.asarray(r.chunk_mono_ns, dtype=np.int64)) == 0))
        for r in records
        if len(r.chunk_mono_ns) > 1
    )
    return chunks, coalesced
