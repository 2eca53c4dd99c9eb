"""Where TTFT goes in a P/D run, from both sides: the proxy's stage timings beside vLLM's own view.

The proxy times its legs (prefill request -> response; decode request -> first chunk; its own overhead);
each vLLM instance splits its TTFT into queue, prefill (first scheduled -> first token) and the front end
(TTFT - queue - prefill). What a leg holds beyond the instance's TTFT is outside it: HTTP to and from the
instance. Means add up; quantiles do not, so they are shown only for the measured parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.prometheus import Quantile
from analysis.runs import NA, Run
from analysis.server_view import InstanceView, PhaseStats, pooled_mean, role_views

Spread = float | Quantile | None


@dataclass(frozen=True)
class SideRow:
    """One part of TTFT: its name, who measured it, mean (ms) and p50 / p90 where measured."""

    part: str
    source: str
    mean: float | NA | None
    p50: Spread = None
    p90: Spread = None
    depth: int = 0  # 0 = a part of TTFT, 1 = inside the part above


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _phase_row(part: str, views: list[InstanceView], key: str, source: str) -> SideRow:
    """A vLLM phase of a role: quantiles when one instance has the role, else the pooled mean only."""
    if not views:
        return SideRow(part, source, NA("no instance of this role has server metrics"), depth=1)
    mean = pooled_mean(views, key)
    phase = views[0].phase(key)
    if mean is None:
        return SideRow(part, source, phase if isinstance(phase, NA) else NA("no observations"), depth=1)
    if len(views) == 1 and isinstance(phase, PhaseStats):
        return SideRow(part, source, mean, phase.p50, phase.p90, depth=1)
    return SideRow(part, f"{source}, pooled over {len(views)} instances", mean, depth=1)


def _side(role: str, leg: str, leg_mean: float | None, views: list[InstanceView]) -> list[SideRow]:
    """The vLLM rows inside one proxy leg: queue, prefill, front end, and what lies outside the instance."""
    src = f"vLLM, {role} side"
    short = role[0].upper()
    ttft = pooled_mean(views, "ttft")
    queue, prefill = pooled_mean(views, "queue"), pooled_mean(views, "prefill")
    first = "prefill" if role == "prefill" else "prefill (its first step)"
    return [
        _phase_row(f"{short} queue", views, "queue", src),
        _phase_row(f"{short} {first}", views, "prefill", src),
        SideRow(
            f"{short} front end (TTFT - queue - prefill)", src, _minus(ttft, _sum(queue, prefill)), depth=1
        ),
        SideRow(f"outside {short} ({leg} - {short} TTFT)", "proxy - vLLM", _minus(leg_mean, ttft), depth=1),
    ]


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def ttft_sides(run: Run) -> list[SideRow] | None:
    """The TTFT split of a P/D run from both sides; None for a run without the proxy's stage timings or
    without a prefill leg (single instance, replicas)."""
    stages = run.stages
    if stages is None or stages.prefill_ms.count == 0:
        return None
    prefill_views = role_views(run.result, "prefill")
    decode_views = role_views(run.result, "decode")
    ttft = run.summary.ttft_ms
    pre, first = stages.prefill_ms, stages.decode_first_chunk_ms
    rows = [SideRow("TTFT", "client", ttft.mean, ttft.p50, ttft.p90)]
    rows.append(SideRow("prefill leg", "proxy", pre.mean, pre.p50, pre.p90))
    rows += _side("prefill", "leg", pre.mean, prefill_views)
    rows.append(SideRow("decode first chunk", "proxy", first.mean, first.p50, first.p90))
    rows += _side("decode", "first chunk", first.mean, decode_views)
    over, client = stages.proxy_overhead_ms, stages.client_side_ms
    rows.append(SideRow("proxy overhead", "proxy", over.mean, over.p50, over.p90))
    rows.append(
        SideRow("client side (TTFT - proxy's parts)", "client - proxy", client.mean, client.p50, client.p90)
    )
    return rows
