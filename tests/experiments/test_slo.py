"""SLO strings: good and bad cases."""

from __future__ import annotations

import pytest

from experiments.slo import parse_slo


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
