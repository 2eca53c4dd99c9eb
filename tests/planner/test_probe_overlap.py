"""steady_gaps and tokens_to_overlap: the decode step from streams whose chunks may come several to a read,
and how long decode streams must be to outlast their batch's prefills."""

from __future__ import annotations

import pytest

from planner.probe import ProbeError, Stream, steady_gaps, tokens_to_overlap


def stream(first: float, n: int, gap: float) -> Stream:
    return Stream([first + k * gap for k in range(n)], prompt_tokens=100)


def test_streams_that_never_all_decode_are_lengthened_past_the_prefills() -> None:
    # Prefills end 1 s apart; 11 tokens at 10 ms last 0.1 s: no gap has all streams decoding.
    streams = [stream(0.0, 11, 0.01), stream(1.0, 11, 0.01)]
    with pytest.raises(ProbeError, match="no token gap"):
        steady_gaps(streams, 100)
    longer = tokens_to_overlap(streams, 10)
    assert longer is not None and longer >= 10 + 90  # 0.9 s shortfall / 10 ms
    again = [stream(0.0, longer + 1, 0.01), stream(1.0, longer + 1, 0.01)]
    step, _, n = steady_gaps(again, 100)
    assert step == pytest.approx(0.01) and n > 0


def test_a_stream_that_came_in_one_read_is_tried_four_times_as_long() -> None:
    # The whole answer in one read: no gap at all, whatever the batch; 64 tokens -> 256.
    whole = Stream([2.0] * 65, prompt_tokens=100)
    with pytest.raises(ProbeError, match="no token gap"):
        steady_gaps([whole], 100)
    assert tokens_to_overlap([whole], 64) == 256
    assert tokens_to_overlap([whole, stream(0.0, 11, 0.01)], 64) == 256


def test_no_estimate_without_two_chunks_per_stream() -> None:
    assert tokens_to_overlap([stream(0.0, 1, 0.01)], 10) is None
    assert tokens_to_overlap([], 10) is None


def test_chunks_of_one_read_stand_for_steps_of_the_gap_split_evenly() -> None:
    """A CPU server's client reads three steps at once: every 3 s a read brings 3 chunks (one read time).
    The step is 3 s / 3 = 1 s, not the median of gaps 3, 0, 0 (= 0)."""
    a = Stream([0.0, 3.0, 3.0, 3.0, 6.0, 6.0, 6.0, 9.0, 9.0, 9.0])
    b = Stream([0.0, 3.0, 3.0, 3.0, 6.0, 6.0, 6.0, 9.0, 9.0, 9.0])
    step, ctx, n = steady_gaps([a, b], 100)
    # window [0, 9]: per stream 3 reads after the first, 3 tokens each (chunks 1..9)
    assert (step, n) == (1.0, 18) and ctx == pytest.approx(100 + 5)
    # a first read of 2 chunks: chunk 1 came with chunk 0 and is no gap
    c = Stream([0.0, 0.0, 2.0, 4.0])
    assert steady_gaps([c], 10) == (2.0, pytest.approx(10 + 2.5), 2)
