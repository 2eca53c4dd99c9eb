"""SLO strings and SLO grids (good and bad cases), lengths, and the one SLO test."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.slo import DEFAULT_SLO_GRID, parse_slo, parse_slo_grid, slo_met
from experiments.workloads import parse_length


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ttft=200,tpot=50,e2e=2000", {"ttft": 200.0, "tpot": 50.0, "e2e": 2000.0}),
        ("ttft=200", {"ttft": 200.0}),
        ("tpot=12.5", {"tpot": 12.5}),
        ("e2el=1500", {"e2e": 1500.0}),
        (" TTFT = 200 , e2e=3e3 ", {"ttft": 200.0, "e2e": 3000.0}),
        ("ttft:200 tpot:50", {"ttft": 200.0, "tpot": 50.0}),  # vLLM's --goodput spelling
    ],
)
def test_good(text: str, expected: dict[str, float]) -> None:
    assert parse_slo(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty SLO"),
        (" , ", "empty SLO"),
        ("ttfb=200", "unknown SLO 'ttfb'"),
        ("ttft=fast", "'fast' is not a number"),
        ("ttft=", "'' is not a number"),
        ("ttft=0", "positive"),
        ("tpot=-5", "positive"),
        ("e2e=inf", "positive finite"),
        ("e2e=nan", "positive finite"),
        ("ttft=1,ttft=2", "ttft given twice"),
        ("e2e=1,e2el=2", "e2e given twice"),
        ("ttft200", "bad SLO part 'ttft200'"),
    ],
)
def test_bad(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_slo(text)
    assert "\n" not in str(info.value)


def test_slo_met_is_the_one_test_with_vllms_rules() -> None:
    nan = float("nan")
    metrics = {
        "ttft_ms": np.array([100.0, 250.0, 251.0, nan, 100.0]),  # the 4th failed: a NaN TTFT misses
        "tpot_ms": np.array([10.0, nan, 5.0, 5.0, 10.5]),  # the 2nd had one output token: passes TPOT
        "e2el_ms": np.array([2000.0, 250.0, 1000.0, nan, 3000.0]),
    }
    assert slo_met(metrics, {"ttft": 250, "tpot": 10}).tolist() == [True, True, False, False, False]
    assert slo_met(metrics, {"e2el": 2000}).tolist() == [True, True, True, False, False]  # the alias
    assert slo_met(metrics, {}).all()
    with pytest.raises(ValueError, match="unknown SLO 'itl'"):
        slo_met(metrics, {"itl": 5})


def test_one_slo_grid_reads_the_planners_and_compare_performances_spellings() -> None:
    """The planner wrote keys apart by spaces or ';', compare_performance.py by ':': one parser, one grid."""
    want = {"ttft": (250.0, 500.0), "tpot": (10.0, 25.0)}
    for text in ("ttft=250,500 tpot=10,25", "ttft=500,250;tpot=25,10,25", "ttft=250,500:tpot=10,25",
                 " ttft=250, 500  tpot=10 25 "):  # fmt: skip
        assert parse_slo_grid(text) == want, text
    assert parse_slo_grid("e2el=2000") == {"e2e": (2000.0,)}
    assert parse_slo_grid("ttft=250,500,1000,2000 tpot=10,15,25,50") == DEFAULT_SLO_GRID


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty SLO grid"),
        ("ttft", "bad SLO grid part 'ttft'"),
        ("speed=3", "bad SLO grid part 'speed=3'"),
        ("ttft=1 ttft=2", "bad SLO grid part 'ttft=2'.*each key once"),
        ("ttft=a", "bounds must be numbers"),
        ("ttft=", "one or more positive bounds"),
        ("tpot=10,0", "one or more positive bounds"),
        ("tpot=inf", "one or more positive bounds"),
    ],
)
def test_bad_slo_grid(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_slo_grid(text)


def test_one_length_spelling() -> None:
    assert (
        parse_length("256") == 256 and parse_length("128:512") == (128, 512) and parse_length("7:7") == (7, 7)
    )
    for bad in ("0", "-3", "a", "5:3", "1:", ":4", "1:x", "1.5"):
        with pytest.raises(ValueError, match="is not a length >= 1 or a range MIN:MAX"):
            parse_length(bad)
