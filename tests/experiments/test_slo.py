"""SLO strings (good and bad cases) and the one SLO test."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.slo import parse_slo, slo_met


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
