"""Arrival processes: inter-arrival statistics, constant rate, config validation, schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.arrivals import ArrivalConfig, arrival_offsets, schedule
from experiments.workloads import RequestSpec

N = 20_000


def gaps_of(offsets: np.ndarray) -> np.ndarray:
    return np.diff(np.concatenate([[0.0], offsets]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_poisson_gaps_are_exponential(seed: int) -> None:
    rate = 8.0
    gaps = gaps_of(arrival_offsets(N, rate, "poisson", seed=seed))
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)
    assert np.all(gaps > 0)


@pytest.mark.parametrize("burstiness", [0.25, 0.5, 2.0, 4.0])
def test_gamma_gaps_have_mean_one_over_rate_and_cv_one_over_sqrt_burstiness(burstiness: float) -> None:
    rate = 3.0
    gaps = gaps_of(arrival_offsets(N, rate, "gamma", burstiness=burstiness, seed=7))
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1 / math.sqrt(burstiness), rel=0.1)


def test_first_request_goes_at_the_first_gap_like_vllm() -> None:
    offsets = arrival_offsets(5, 2.0, "constant")
    assert offsets.tolist() == [0.5, 1.0, 1.5, 2.0, 2.5]
    poisson = arrival_offsets(5, 2.0, "poisson", seed=3)
    assert poisson[0] > 0 and np.all(np.diff(poisson) > 0)


def test_gamma_with_infinite_burstiness_is_constant() -> None:
    assert arrival_offsets(3, 4.0, "gamma", burstiness=math.inf).tolist() == [0.25, 0.5, 0.75]


@pytest.mark.parametrize("kind", ["poisson", "gamma", "constant"])
def test_infinite_rate_sends_everything_at_once(kind: str) -> None:
    assert arrival_offsets(4, math.inf, kind).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_no_requests_gives_no_offsets() -> None:
    assert arrival_offsets(0, 1.0, "poisson").size == 0


def test_seeded_and_reproducible() -> None:
    a = arrival_offsets(100, 5.0, "gamma", burstiness=0.5, seed=11)
    assert np.array_equal(a, arrival_offsets(100, 5.0, "gamma", burstiness=0.5, seed=11))
    assert not np.array_equal(a, arrival_offsets(100, 5.0, "gamma", burstiness=0.5, seed=12))


def test_normalize_ends_at_n_over_rate_like_vllm() -> None:
    offsets = arrival_offsets(50, 10.0, "poisson", seed=0, normalize=True)
    assert offsets[-1] == pytest.approx(5.0, rel=1e-12)
    raw = arrival_offsets(50, 10.0, "poisson", seed=0)
    assert np.allclose(offsets / offsets[-1], raw / raw[-1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0.0}, "request rate must be a positive number"),
        ({"rate": -1.0}, "request rate must be a positive number"),
        ({"rate": math.nan}, "request rate must be a positive number"),
        ({"rate": 1.0, "kind": "gamma", "burstiness": 0.0}, "burstiness must be a positive number"),
        ({"rate": 1.0, "kind": "gamma", "burstiness": -2.0}, "burstiness must be a positive number"),
        ({"rate": 1.0, "kind": "gamma", "burstiness": math.nan}, "burstiness must be a positive number"),
        ({"rate": 1.0, "kind": "poisson", "burstiness": 2.0}, "applies to kind 'gamma' only"),
        ({"rate": 1.0, "kind": "uniform"}, "unknown arrival kind 'uniform'"),
        ({"rate": 1.0, "n": -1}, "number of requests must be an integer >= 0"),
    ],
)
def test_arrival_offsets_validation(kwargs: dict, message: str) -> None:
    args = {"n": 10, "kind": "poisson", **kwargs}
    with pytest.raises(ValueError, match=message):
        arrival_offsets(args.pop("n"), args.pop("rate"), **args)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "poisson"}, "needs a request rate"),
        ({"kind": "gamma", "rate": 0}, "request rate must be a positive number"),
        ({"kind": "closed"}, "need concurrency >= 1"),
        ({"kind": "closed", "concurrency": 0}, "need concurrency >= 1"),
        ({"kind": "closed", "concurrency": 2, "rate": 1.0}, "takes no request rate"),
        ({"kind": "trace", "rate": 1.0}, "takes no request rate"),
        ({"kind": "poisson", "rate": 1.0, "concurrency": 4}, "use max_concurrency"),
        ({"kind": "poisson", "rate": 1.0, "max_concurrency": 0}, "max_concurrency must be"),
        ({"kind": "poisson", "rate": 1.0, "warmup": -1}, "warmup must be an integer >= 0"),
        ({"kind": "poisson", "rate": 1.0, "seed": 1.5}, "seed must be an integer"),
        ({"kind": "constant", "rate": 1.0, "burstiness": 0.5}, "applies to kind 'gamma' only"),
        ({"kind": "bursty", "rate": 1.0}, "unknown arrival kind"),
    ],
)
def test_arrival_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArrivalConfig(**kwargs)


def specs(n: int, arrivals: list[float | None] | None = None) -> list[RequestSpec]:
    arrivals = arrivals or [None] * n
    return [RequestSpec(i, f"t{i}", 1, 4, arrivals[i]) for i in range(n)]


def test_schedule_open_loop_uses_the_seeded_process() -> None:
    cfg = ArrivalConfig(kind="gamma", rate=5.0, burstiness=0.5, seed=9)
    assert schedule(specs(6), cfg) == arrival_offsets(6, 5.0, "gamma", 0.5, seed=9).tolist()


def test_schedule_trace_and_closed() -> None:
    assert schedule(specs(3, [0.0, 0.5, 2.0]), ArrivalConfig(kind="trace")) == [0.0, 0.5, 2.0]
    assert schedule(specs(3), ArrivalConfig(kind="closed", concurrency=2)) == [None, None, None]
    with pytest.raises(ValueError, match="request 1 has no arrival_s"):
        schedule(specs(2, [0.0, None]), ArrivalConfig(kind="trace"))
