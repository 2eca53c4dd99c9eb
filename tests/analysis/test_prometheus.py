"""Prometheus arithmetic on hand-made buckets (histogram_quantile's rules), the stored-delta quirks (zero
deltas left out), and the /metrics parsing keyed as the runner keys it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from analysis.prometheus import (
    INF,
    TIME_TO_FIRST_TOKEN,
    Quantile,
    counter,
    fill_missing_low_edges,
    histogram,
    histogram_quantile,
    split_key,
)
from experiments import server_metrics
from tests.conftest import free_port


def edges(q: Quantile | None) -> tuple[float, float, float]:
    assert q is not None
    return q.value, q.lower, q.upper


BUCKETS = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (INF, 40.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.1, Quantile(0.04, 0.0, 0.1)),  # first bucket: from 0
        (0.5, Quantile(0.3, 0.1, 0.5)),  # rank 20: 10 below, 20 in (0.1, 0.5]
        (0.9, Quantile(0.8, 0.5, 1.0)),  # rank 36: 30 below, 10 in (0.5, 1]
        (1.0, Quantile(1.0, 0.5, 1.0)),
        (0.0, Quantile(0.0, 0.0, 0.1)),
    ],
)
def test_quantile_interpolates_inside_the_bucket(q: float, expected: Quantile) -> None:
    assert edges(histogram_quantile(q, BUCKETS)) == pytest.approx(edges(expected))


def test_quantile_in_the_inf_bucket_is_the_highest_finite_edge() -> None:
    got = histogram_quantile(0.9, [(0.1, 5.0), (0.25, 6.0), (INF, 10.0)])
    assert got == Quantile(0.25, 0.25, INF)


def test_quantile_edge_cases() -> None:
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None  # no observations
    assert histogram_quantile(0.5, [(INF, 3.0)]) is None  # one bucket
    assert histogram_quantile(0.5, [(0.1, 3.0), (0.2, 3.0)]) is None  # no +Inf bucket
    # counts that decrease along the edges are raised to the running maximum
    raised = histogram_quantile(0.5, [(0.1, 10.0), (0.5, 8.0), (INF, 12.0)])
    assert edges(raised) == pytest.approx((0.06, 0.0, 0.1))
    with pytest.raises(ValueError, match="not in"):
        histogram_quantile(1.5, BUCKETS)


def test_missing_low_edges_come_back_with_zero_counts() -> None:
    # the runner stores no zero delta: TTFT buckets below 0.04 s saw nothing and are absent
    stored = {
        'vllm:time_to_first_token_seconds_bucket{le="0.04"}': 50.0,
        'vllm:time_to_first_token_seconds_bucket{le="0.06"}': 100.0,
        'vllm:time_to_first_token_seconds_bucket{le="+Inf"}': 100.0,
        "vllm:time_to_first_token_seconds_count{}": 100.0,
        "vllm:time_to_first_token_seconds_sum{}": 4.0,
    }
    h = histogram(stored, "vllm:time_to_first_token_seconds")
    assert h is not None and h.mean == pytest.approx(0.04)
    assert edges(h.quantile(0.25)) == pytest.approx((0.03, 0.02, 0.04))  # not interpolated from 0
    # an unknown layout is left as stored: the first bucket starts at 0, as Prometheus has it
    odd = [(0.033, 5.0), (INF, 5.0)]
    assert fill_missing_low_edges(odd, TIME_TO_FIRST_TOKEN) == odd


def test_histogram_reads_a_zero_sum_and_misses_an_absent_family() -> None:
    deltas = {
        'vllm:request_decode_time_seconds_bucket{le="+Inf"}': 4.0,
        "vllm:request_decode_time_seconds_count{}": 4.0,
    }
    h = histogram(deltas, "vllm:request_decode_time_seconds")
    assert h is not None and h.count == 4 and h.mean == 0.0  # _sum unchanged, so not stored
    assert histogram(deltas, "vllm:request_inference_time_seconds") is None


def test_counter_by_label() -> None:
    d = {
        'vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}': 2047.0,
        'vllm:prompt_tokens_by_source_total{source="local_compute"}': 1.0,
    }
    assert counter(d, "vllm:prompt_tokens_by_source_total") == 2048.0
    assert counter(d, "vllm:prompt_tokens_by_source_total", source="local_compute") == 1.0
    assert counter(d, "vllm:num_preemptions_total") is None
    assert split_key('a{b="1",le="0.5"}') == ("a", {"b": "1", "le": "0.5"})


def _exposition() -> str:
    reg = CollectorRegistry()
    labels = {"model_name": "m", "engine": "0"}
    h = Histogram(
        "vllm:time_to_first_token_seconds", "ttft", list(labels), buckets=TIME_TO_FIRST_TOKEN, registry=reg
    ).labels(**labels)
    c = Counter("vllm:prompt_tokens_by_source", "p", [*labels, "source"], registry=reg)
    for v in (0.05, 0.5, 2.0):
        h.observe(v)
    c.labels(**labels, source="local_compute").inc(7)
    return generate_latest(reg).decode()


@contextmanager
def serving(text: str) -> Iterator[str]:
    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_parsed_text_is_keyed_as_the_runner_keys_its_scrape() -> None:
    text = _exposition()
    parsed = server_metrics.parse(text)
    with serving(text) as url:
        scraped = server_metrics.scrape(url)
    assert scraped == parsed  # both families are among those the runner keeps
    assert parsed['vllm:time_to_first_token_seconds_bucket{le="0.1"}'] == 1.0
    assert parsed['vllm:time_to_first_token_seconds_bucket{le="0.04"}'] == 0.0
    assert parsed['vllm:prompt_tokens_by_source_total{source="local_compute"}'] == 7.0
    assert not any("_created" in k or "engine" in k for k in parsed)
    h = histogram(server_metrics.delta({}, parsed), "vllm:time_to_first_token_seconds")
    assert h is not None and h.count == 3 and h.sum == pytest.approx(2.55)
    assert edges(h.quantile(0.5)) == pytest.approx((0.375, 0.25, 0.5))
    assert edges(h.quantile(0.1)) == pytest.approx((0.046, 0.04, 0.06))  # zero buckets put back
