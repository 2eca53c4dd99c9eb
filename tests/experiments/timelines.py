"""Hand-built request timelines shared by the metric and record tests (values worked out by hand).

E2EL ends at the last text chunk, as in vLLM (the stream's end after [DONE]/usage comes later).
A: TTFT 100, chunks every 20/30/10 ms, E2EL 160, 4 tokens -> TPOT (160-100)/3 = 20, lateness 2.
B: TTFT 200, one gap of 40, E2EL 240, 3 tokens in 2 chunks -> TPOT (240-200)/2 = 20, lateness 0.
C: TTFT 30, a single token, E2EL 30 -> no TPOT, no ITL, lateness 5.
D: failed; its end (500 ms) is the last end, so the measured duration is 0.5 s.
W: warm-up; would stretch the duration and add lateness 100 if it were counted.
"""

from __future__ import annotations

from experiments.schema import Record

BASE_NS = 7_000_000_000_000  # an arbitrary monotonic origin


def ms(x: float) -> int:
    return BASE_NS + int(x * 1_000_000)


def record(
    index: int,
    sent: float,
    chunks: list[float],
    end: float,
    completion: int | None,
    prompt: int | None,
    scheduled: float | None = None,
    ok: bool = True,
    warmup: bool = False,
    error: str | None = None,
) -> Record:
    return Record(
        index=index,
        warmup=warmup,
        ok=ok,
        sent_mono_ns=ms(sent),
        first_token_mono_ns=ms(chunks[0]) if chunks else None,
        end_mono_ns=ms(end),
        chunk_mono_ns=[ms(c) for c in chunks],
        prompt_tokens=prompt,
        completion_tokens=completion,
        scheduled_mono_ns=None if scheduled is None else ms(scheduled),
        error=error,
    )


def records() -> list[Record]:
    """A, B, C, D and W (fresh objects: tests may change them)."""
    return [
        record(0, 0, [100, 120, 150, 160], 190, completion=4, prompt=10, scheduled=-2),
        record(1, 50, [250, 290], 300, completion=3, prompt=20, scheduled=50),
        record(2, 60, [90], 100, completion=1, prompt=5, scheduled=55),
        record(3, 70, [], 500, completion=None, prompt=None, scheduled=70, ok=False, error="HTTP 500: boom"),
        record(99, -1000, [-900, -800], 5000, completion=2, prompt=7, scheduled=-1100, warmup=True),
    ]
