"""The break-even map as files: one table and one heatmap per model, a README with a paragraph per model,
and the JSON of every cell; and the `python -m planner break-even` command that writes them."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from experiments.slo import DEFAULT_SLO_GRID, parse_slo_grid
from planner.break_even import (
    DEFAULT_MAX_MODEL_LEN,
    DEFAULT_ROUTES,
    GPU_COUNTS,
    MAP_MODELS,
    TRACES,
    BreakEven,
    Cell,
    MapWorkload,
    ModelInput,
    Side,
    break_even,
    default_workloads,
    flips,
    parse_routes,
    prefix_hit_rates,
)
from planner.plots import save
from planner.profile_model import Profile, invoked_command, load_profile
from planner.search import SearchConfig
from planner.slo_scale import crossed, parse_scales, scale_axes, scale_label
from planner.validate import slo_cells, slo_label
from planner.validate_report import grid_text
from testbed.cli_errors import arg_type

CLIP = 1.0  # heatmap colours saturate at +-100%
CLEAR = 0.15  # a margin beyond the 8B validation's rate tolerance (the sustained rate within 15%)
UNCERTAINTY = "## Uncertainty: what is measured and what is carried"
GENERATED_SECTIONS = ("## Per model: ", UNCERTAINTY)  # the README's own `## ` sections; others are by hand


def pct(m: float | None) -> str:
    if m is None:
        return "-"
    if math.isinf(m):
        return "P/D only"
    return f"{100 * m:+.0f}%"


def _num(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _hits(side: Side) -> str:
    return "-" if side.prefix_hit_rate is None else f"{100 * side.prefix_hit_rate:.0f}%"


def table(cells: Sequence[Cell]) -> list[str]:
    """Every cell; "route adds": the best P/D setup's goodput per GPU over the best split one's ("+0%":
    split won); "prefix hits": the predicted share of prompt tokens served from the prefix caches."""
    lines = [
        "| workload | GPUs | SLO (ms) | best P/D | req/s/GPU | best split P/D | route adds | best aggregated "
        "| req/s/GPU | margin /GPU | P/D req/s/kW | agg. req/s/kW | margin /kW | J/req P/D | J/req agg. "
        "| prefix hits P/D, agg. |",
        "|" + "---|" * 16,
    ]
    for c in cells:
        split = c.pd_split or c.pd
        slo = slo_label(c.slo) if c.scale is None else f"{c.label}: {slo_label(c.slo)}"
        lines.append(
            f"| {c.workload} | {c.gpus} | {slo} | {c.pd.setup} | {c.pd.per_gpu:.2f} | "
            f"{split.setup} ({split.per_gpu:.2f}) | {pct(c.route_gain)} | "
            f"{c.agg.setup} | {c.agg.per_gpu:.2f} | **{pct(c.margin_gpu)}** | "
            f"{_num(c.pd_kw.per_kw)} ({c.pd_kw.setup}) | {_num(c.agg_kw.per_kw)} ({c.agg_kw.setup}) | "
            f"**{pct(c.margin_kw)}** | {_num(c.pd.j_per_request, '.0f')} | "
            f"{_num(c.agg.j_per_request, '.0f')} | {_hits(c.pd)}, {_hits(c.agg)} |"
        )
    return lines


def heatmap(result: BreakEven, model: str) -> Figure:
    """Margin per GPU and per kW: rows workload x GPUs, columns the SLO cells; green where P/D pays."""
    cells = result.cells_of(model)
    scaled = any(derived(m) for m in result.models if m.name == model)
    tag = " (derived profile: a prediction)" if scaled else ""
    rows = [(w.name, n) for w in result.workloads for n in result.gpus]
    cols = result.columns()
    fig = Figure(figsize=(max(9.0, 0.75 * len(cols) + 3), 1.2 + 0.42 * len(rows) * 2), layout="constrained")
    axes = fig.subplots(2, 1)
    for ax, (title, margin) in zip(
        axes,
        (("goodput per GPU", lambda c: c.margin_gpu), ("goodput per kW", lambda c: c.margin_kw)),
        strict=True,
    ):
        grid = np.full((len(rows), len(cols)), np.nan)
        for c in cells:
            m = margin(c)
            if m is not None:
                grid[rows.index((c.workload, c.gpus)), cols.index(c.label)] = max(-CLIP, min(CLIP, m))
        im = ax.imshow(grid, cmap="RdYlGn", vmin=-CLIP, vmax=CLIP, aspect="auto")
        for c in cells:
            i, j = rows.index((c.workload, c.gpus)), cols.index(c.label)
            m = margin(c)
            ax.text(j, i, "n/a" if m is None else ("P/D" if math.isinf(m) else f"{100 * m:+.0f}"),
                    ha="center", va="center", fontsize=6.5)  # fmt: skip
        ax.set_xticks(range(len(cols)), [c.replace(" ", "\n") for c in cols], fontsize=6.5)
        ax.set_yticks(range(len(rows)), [f"{w} x{n}" for w, n in rows], fontsize=7)
        at = "\nat SLO scales (x one request's TTFT and TPOT alone)" if result.slo_scales else ""
        ax.set_title(f"{model}{tag}: P/D margin over the best aggregated setup{at}, {title} (%)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8, format=lambda v, _: f"{100 * v:+.0f}%")
    return fig


def _compact(labels: Sequence[str], total: int, noun: str = "SLO") -> str:
    return f"every {noun}" if len(labels) == total else ", ".join(labels)


def paragraph(result: BreakEven, model: str) -> list[str]:
    """From which workload, GPU count and SLO P/D pays for this model, and at what energy."""
    cells = result.cells_of(model)
    n_slo = len(result.columns())
    noun = "SLO scale" if result.slo_scales else "SLO"
    lines: list[str] = []
    for w in result.workloads:
        parts = []
        for n in result.gpus:
            mine = [c for c in cells if c.workload == w.name and c.gpus == n]
            wins = [c for c in mine if (c.margin_gpu or 0) > 0]
            if not wins:
                best = max(mine, key=lambda c: c.margin_gpu if c.margin_gpu is not None else -9)
                parts.append(f"{n} GPUs: never (closest {pct(best.margin_gpu)} at {best.label})")
                continue
            top = max(wins, key=lambda c: c.margin_gpu or 0)
            clear = sum(1 for c in wins if (c.margin_gpu or 0) > CLEAR)
            je = f"{_num(top.pd.j_per_request, '.0f')} vs {_num(top.agg.j_per_request, '.0f')} J/request"
            parts.append(
                f"{n} GPUs: {len(wins)}/{n_slo} {noun}s ({_compact([c.label for c in wins], n_slo, noun)}; "
                f"{clear} by more than {100 * CLEAR:.0f}%); "
                f"best {top.pd.setup} {pct(top.margin_gpu)} per GPU at {top.label}, {je}, "
                f"{pct(top.margin_kw)} per kW"
            )
        lines.append(
            f"- **{w.name}** ({w.describe()}): " + "; ".join(parts) + ". " + route_text(result, model, w.name)
        )
    kw_wins = sum(1 for c in cells if (c.margin_kw or 0) > 0)
    lines.append(
        f"- Per kW, P/D wins {kw_wins} of {len(cells)} cells. Where P/D wins per GPU but not per kW, the "
        "extra throughput costs more energy per request than it saves in GPUs."
    )
    return lines


def _route_of(setup: str) -> str:
    return setup.partition(" ")[2] or "split"


def route_text(result: BreakEven, model: str, workload: str) -> str:
    """Which per-request policy won this workload's P/D cells, by how much over split; prefix hits."""
    cells = [c for c in result.cells_of(model) if c.workload == workload]
    searched = result.routes_searched.get(model, {}).get(workload, [])
    won: dict[str, int] = {}
    for c in cells:
        if (c.route_gain or 0) > 0:
            won[_route_of(c.pd.setup)] = won.get(_route_of(c.pd.setup), 0) + 1
    text = f"Routes searched: {', '.join(searched)}; "
    if not won:
        text += "split was the best P/D route in every cell."
    else:
        top = max(cells, key=lambda c: c.route_gain or 0)
        by = ", ".join(f"{r} in {k}" for r, k in sorted(won.items(), key=lambda rk: -rk[1]))
        text += (
            f"a route beat split in {sum(won.values())}/{len(cells)} cells ({by}), by at most "
            f"{pct(top.route_gain)} ({top.pd.setup}, {top.gpus} GPUs, {top.label})."
        )
    hits = prefix_hit_rates(cells).get(workload)
    if hits:
        text += (
            " Predicted prefix-cache hits at the sustained rate: "
            + ", ".join(
                f"{'P/D' if fam == 'pd' else 'aggregated'} {100 * r['min']:.0f}-{100 * r['max']:.0f}%"
                for fam, r in hits.items()
            )
            + " of prompt tokens."
        )
    return text


def derived(m: ModelInput) -> bool:
    """A model whose profile was scaled from another's (planner/derive.py): its cells are predictions of
    predictions, no measurement of this model behind them."""
    return m.profile.provenance.source == "derived"


def provenance_lines(m: ModelInput) -> list[str]:
    p, prof = m.profile.provenance, m.profile
    kv = prof.kv_transfer
    moe = " (with the MoE experts term)" if prof.decode.routing else ""
    if derived(m):
        return [
            f"- **{m.name}**: `{m.path}`, **derived, not measured**: the measured 8B profile scaled by "
            f"roofline ratios{moe} (`planner/derive.py`; rules, predicted points and what would falsify "
            "them: `results/profiles/derived/README.md`). The fit errors it carries are the 8B's, not its "
            f"own; power is the 8B's; KV side: {kv.source}.",
        ]
    return [
        f"- **{m.name}**: `{m.path}`, {p.source} on {p.gpu or '?'} (vLLM {p.vllm_version or '?'}); "
        f"prefill fit max error {100 * prof.prefill.fit.max_rel_error:.1f}%, decode "
        f"{100 * prof.decode.fit.max_rel_error:.1f}%{moe}; KV side: {kv.source}.",
    ]


def slo_text(result: BreakEven) -> str:
    """What the map's SLO axis is: the absolute grid, or the SLO scales and what they multiply."""
    if not result.slo_scales:
        grid = {k: tuple(sorted({s[k] for s in result.slos})) for k in result.slos[0]}
        return f"SLO grid (ms): {grid_text(grid)}."
    if crossed(result.slo_scales):
        ts, ps = scale_axes(result.slo_scales)
        which = (
            f"SLO scales, a cross product: TTFT scale {', '.join(f'{t:g}' for t in ts)} x TPOT scale "
            f"{', '.join(f'{p:g}' for p in ps)} (DistServe's SLO scale uses one scale for both bounds; its "
            "diagonal is in this grid where the two lists share a value). Per model and workload, TTFT <= "
            "TTFT scale x one request's"
        )
        tpot = "TPOT <= TPOT scale x"
    else:
        which = (
            f"SLO scale: {', '.join(f'{s:g}' for s in result.slo_scales)} (DistServe's SLO scale: one scale "
            "for both bounds, not the cross product of two). Per model and workload, TTFT <= scale x one "
            "request's"
        )
        tpot = "TPOT <= scale x"
    return (
        f"{which} TTFT alone on one instance at the workload's median prompt (API-server time + its prefill "
        f"steps + the serving loop's lag for one output), {tpot} one batch-1 decode step at the median "
        "prompt + half the median output (the mean step of one request alone); medians from the largest "
        "run's requests (lower median), bounds rounded to 0.1 ms (`planner/slo_scale.py`; a simulated "
        "request alone sees the same). The resolved bounds per model and workload are below and in every "
        "table row."
    )


def resolved_table(result: BreakEven, models: Sequence[str]) -> list[str]:
    """The SLO bounds each scale resolved to, per model and workload (ms); for a cross product, the bounds
    of each TTFT scale and of each TPOT scale (every pair of them is a column of the map)."""
    scales = result.slo_scales
    if crossed(scales):
        ts, ps = scale_axes(scales)
        lines = [
            "| model | workload | median prompt -> output | alone: TTFT, TPOT (ms) | TTFT bounds (ms) at "
            f"{', '.join(f'{t:g}x' for t in ts)} | TPOT bounds (ms) at {', '.join(f'{p:g}x' for p in ps)} |",
            "|---|---|---|---|---|---|",
        ]
        for m in models:
            for w, u in result.unloaded.get(m, {}).items():
                ttft = ", ".join(f"{u.bounds(t)['ttft']:g}" for t in ts)
                tpot = ", ".join(f"{u.bounds(p)['tpot']:g}" for p in ps)
                lines.append(
                    f"| {m} | {w} | {u.prompt_tokens} -> {u.output_tokens} | {u.ttft_ms:.1f}, "
                    f"{u.tpot_ms:.2f} | {ttft} | {tpot} |"
                )
        return lines
    lines = [
        "| model | workload | median prompt -> output | alone: TTFT, TPOT (ms) | "
        + " | ".join(scale_label(s) for s in scales)
        + " |",
        "|" + "---|" * (4 + len(scales)),
    ]
    for m in models:
        for w, u in result.unloaded.get(m, {}).items():
            lines.append(
                f"| {m} | {w} | {u.prompt_tokens} -> {u.output_tokens} | {u.ttft_ms:.1f}, {u.tpot_ms:.2f} | "
                + " | ".join(slo_label(u.bounds(s)) for s in scales)
                + " |"
            )
    return lines


def readme(
    result: BreakEven, validation: dict[str, Any] | None, command: str, kept: list[str] | None = None
) -> str:
    c = result.config
    names = [m.name for m in result.models]
    lines = ["# Where P/D pays: the break-even map", ""]
    scaled = [m.name for m in result.models if derived(m)]
    if missing := [m for m in MAP_MODELS if m not in names or m in scaled]:
        have = [n for n in names if n not in scaled]
        lines += [
            f"> **Partial map: measured profiles for {', '.join(have) or 'no model'} only.** "
            + (
                f"{', '.join(scaled)} come from derived profiles (the 8B's scaled by stated rules, "
                "committed before any device profile of them): their cells are predictions to be checked, "
                "not findings. "
                if scaled
                else ""
            )
            + f"No measured profile yet for {', '.join(missing)}; their device runbook is in "
            "`disagg/campaigns/README.md`. Rerun the command below with the measured profiles once they "
            "exist, and compare.",
            "",
        ]
    lines += [
        f"Models: {', '.join(names)}. Predicted by the planner from one-instance profiles; of these setups "
        "only the 8B's one instance, 2 replicas and 1P1D were ever measured (2 x H200, validation below). "
        "Generated by:",
        "",
        "```",
        command,
        "```",
        "",
        f"For each model x workload x SLO x {'/'.join(map(str, result.gpus))} GPUs: the best disaggregated "
        "setup (every xPyD with x + y = GPUs, the profile's KV connector, the proxy's round robin, each "
        f"under every per-request policy of {', '.join(result.routes)}: threshold:pNN keeps the "
        "prompts up to the NN-th percentile of the workload's lengths local; thresholds that split all or "
        "none of its requests are dropped) against the best aggregated one (N replicas or one instance), "
        f"by goodput per GPU: the highest Poisson rate with >= {c.target:.0%} of requests meeting the SLO "
        f"(`planner/search.py`: bisection on simulated runs to {c.precision:.0%}; "
        f"max({c.requests_per_gpu} x GPUs, {c.min_requests}) requests per simulated run, seed {c.seed}; "
        "measured runs have their own rule, `analysis/sustained.py`, which the validation below applies). "
        "Per kW: that rate over the setup's predicted mean power (all its GPUs, idle included), the best "
        'of each family\'s few best. Margin = P/D / aggregated - 1; "P/D only": only P/D meets the SLO; '
        '"-": neither does. Trace workloads take the traces\' lengths (first rows) at our rates, not their '
        f"arrival times. Requests longer than {result.max_model_len} tokens (prompt + output) are skipped: "
        + "; ".join(
            f"{m}: " + ", ".join(f"{w} {k}" for w, k in per.items() if k) for m, per in result.skipped.items()
        )
        + " (the most of any one run; none listed = none skipped).",
        "",
        f"{slo_text(result)} Per model: `<model>/table.md` (every cell) and `<model>/heatmap.png`; "
        "every number in "
        f"`break_even.json`. {compute_time(result)} Trace workloads with prompt blocks (Mooncake's "
        "hash_ids) run with each instance's prefix cache, as vLLM's prefix caching (on by default) serves "
        'them; "route adds" in the tables is the best P/D over the best split P/D per GPU.',
        "",
        *([*resolved_table(result, names), ""] if result.slo_scales else []),
        f"## Per model: from which workload, GPU count and {'SLO scale' if result.slo_scales else 'SLO'} "
        "P/D pays, and at what energy",
        "",
    ]
    for m in result.models:
        head = f"### {m.name}" + (" (derived profile: a prediction, not measured)" if derived(m) else "")
        lines += [head, "", *paragraph(result, m.name), ""]
        if fl := flips(result.cells_of(m.name), lambda cell: cell.margin_gpu):
            lines += ["Where it flips (per GPU):", "", *(f"- {f}" for f in fl[:12])]
            lines += ([f"- ... {len(fl) - 12} more in `{m.name}/table.md`"] if len(fl) > 12 else []) + [""]
    for section in kept or []:
        lines += [section.rstrip("\n"), ""]
    lines += [UNCERTAINTY, ""]
    for m in result.models:
        lines += provenance_lines(m)
    if validation:
        counts = validation.get("counts", {})
        j, r = counts.get("j_per_request", {}), counts.get("sustained_rate", {})
        crit = validation.get("criteria", {})
        lines += [
            "",
            f"The 8B profile's validation against measured 2 x H200 runs (`{validation.get('_path')}`): "
            f"J per request within {100 * crit.get('j_per_request_within', 0.1):.0f}% in {j.get('pass')} of "
            f"{sum(j.values())} runs; the SLO-sustaining rate within "
            f"{100 * crit.get('sustained_rate_within', 0.15):.0f}% in {r.get('pass')} cells, missed in "
            f"{r.get('miss')}, undetermined in {r.get('undetermined')}. Margins within that error are not "
            "a verdict.",
        ]
    lines += [
        "",
        "Not modelled (planner README): link contention between KV transfers, preemption, tensor "
        "parallelism. Modelled coarsely: the prefix cache works on the trace's blocks (Mooncake: 512 "
        "tokens), not vLLM's 16-token blocks, and counts the whole KV pool as cache though running "
        "requests hold part of it, so under load it overstates hits (planner/prefix_cache.py); a trace "
        "run lengthened for a steady state repeats the slice as new conversations (no hits on the first "
        "pass's blocks); the load route is searched at the proxy's default thresholds only.",
        "",
    ]
    return "\n".join(lines)


def hand_sections(text: str) -> list[str]:
    """The `## ` sections of a README that the report does not write (readings by hand, what changed
    since an earlier map), each with its heading, in order: a regeneration keeps them before the
    uncertainty section."""
    sections: list[list[str]] = []
    keep = False
    for line in text.splitlines():
        if line.startswith("## "):
            keep = not line.startswith(GENERATED_SECTIONS)
            if keep:
                sections.append([])
        if keep:
            sections[-1].append(line)
    return ["\n".join(lines).rstrip() + "\n" for lines in sections]


def write(
    result: BreakEven,
    out: Path,
    validation: dict[str, Any] | None,
    command: str,
    kept: list[str] | None = None,
) -> list[Path]:
    """`kept`: sections written by hand (hand_sections of the README this one replaces)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for m in result.models:
        d = out / m.name
        d.mkdir(exist_ok=True)
        cells = result.cells_of(m.name)
        body = [f"# {m.name}: P/D vs aggregated, every cell", "", "```", m.profile.describe(), "```", ""]
        if result.slo_scales:
            body += [slo_text(result), "", *resolved_table(result, [m.name]), ""]
        (d / "table.md").write_text("\n".join(body + table(cells)) + "\n")
        save(heatmap(result, m.name), d / "heatmap.png")
        written += [d / "table.md", d / "heatmap.png"]
    doc = {**result.to_dict(), "command": command}
    (out / "break_even.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out / "README.md").write_text(readme(result, validation, command, kept))
    return [*written, out / "break_even.json", out / "README.md"]


# ---------------------------------------------------------------------------------------------------------


def _model_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=PROFILE.json, e.g. llama-3.1-8b=h200-8b.json")
    return name, Path(path)


def compute_time(result: BreakEven) -> str:
    """How long the map took: wall time, and on several processes the time they spent in all."""
    if result.jobs == 1:
        return (f"{result.wall_s:.0f} s to compute, {result.routes_wall_s:.0f} s of it on the routes other "
                "than split.")  # fmt: skip
    return (f"{result.wall_s:.0f} s to compute on {result.jobs} processes, which spent {result.busy_s:.0f} s "
            f"in all, {result.routes_wall_s:.0f} s of it on the routes other than split.")  # fmt: skip


def add_break_even_parser(sub: Any) -> None:
    p = sub.add_parser("break-even", help="where P/D pays: model x workload x SLO x GPUs, table + heatmap")
    p.add_argument("--profile", type=_model_arg, action="append", required=True,
                   help="NAME=PROFILE.json, one per model (repeatable)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="folder for README.md, break_even.json, <model>/")
    p.add_argument("--workloads", default="prefill-heavy,decode-heavy,azure-conv,mooncake-conv")
    p.add_argument("--traces", type=Path, default=TRACES, help="folder of the shared traces")
    p.add_argument("--gpus", default=",".join(map(str, GPU_COUNTS)), help="GPU counts, e.g. 2,4,8")
    slo = p.add_mutually_exclusive_group()
    slo.add_argument("--slo-grid", type=arg_type(parse_slo_grid), default=None,
                     help=f"SLO bounds in ms (default {grid_text(DEFAULT_SLO_GRID)!r})")  # fmt: skip
    slo.add_argument(
        "--slo-scale",
        type=arg_type(parse_scales),
        default=None,
        help="SLO scales instead of the grid, e.g. 2,3,5,10: per model and workload, TTFT and TPOT <= "
        "scale x one request's alone at the workload's median lengths; or the cross product of a TTFT and "
        "a TPOT scale, e.g. 'ttft=2,5,10,30 tpot=2,3,5'",
    )
    p.add_argument("--max-model-len", type=int, default=DEFAULT_MAX_MODEL_LEN, help="longer requests skipped")
    p.add_argument(
        "--validation", type=Path, default=None, help="a validation.json of the 8B profile to quote"
    )
    p.add_argument("--target", type=float, default=0.9, help="SLO attainment that counts as sustained")
    p.add_argument("--requests-per-gpu", type=int, default=300)
    p.add_argument("--num-requests", type=int, default=2000, help="at least this many requests per run")
    p.add_argument("--precision", type=float, default=0.02, help="relative precision of the sustained rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes for the (model, workload) pairs (default: this machine's CPUs); the "
                   "cells do not depend on it")  # fmt: skip
    p.add_argument(
        "--routes",
        type=arg_type(parse_routes),
        default=list(DEFAULT_ROUTES),
        help="per-request policies of the P/D side, split among them; threshold:pNN keeps each workload's "
        f"prompts up to its NN-th length percentile local (default {','.join(DEFAULT_ROUTES)})",
    )


def select_workloads(names: str, traces: Path) -> list[MapWorkload]:
    known = {w.name: w for w in default_workloads(traces)}
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown or not chosen:
        raise ValueError(f"unknown workload(s) {unknown or names!r}; use {', '.join(known)}")
    for n in chosen:
        ds = known[n].spec.dataset
        if ds and not Path(ds).is_file():
            raise ValueError(f"trace {ds} not found; pass --traces DIR (the shared traces folder)")
    return [known[n] for n in chosen]


def cmd_break_even(args: argparse.Namespace, load: Callable[[str], Profile] = load_profile) -> int:
    models = [ModelInput(name, load(str(path)), str(path)) for name, path in args.profile]
    try:
        gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
    except ValueError:
        raise ValueError(f"--gpus {args.gpus!r}: give GPU counts, e.g. 2,4,8") from None
    workloads = select_workloads(args.workloads, args.traces)
    scales = args.slo_scale or []
    slos = [] if scales else slo_cells(args.slo_grid or DEFAULT_SLO_GRID)
    # the search's own SLO is replaced by each cell's (search_grid); a scale map's are resolved later
    cfg = SearchConfig(slos[0] if slos else {"ttft": 1.0}, args.target, args.precision, "poisson", 1.0,
                       args.seed, args.requests_per_gpu, args.num_requests)  # fmt: skip
    validation = None
    if args.validation:
        validation = {**json.loads(args.validation.read_text()), "_path": str(args.validation)}
    result = break_even(
        models,
        workloads,
        slos,
        gpus,
        cfg,
        args.max_model_len,
        progress=print,
        routes=args.routes,
        scales=scales,
        jobs=args.jobs,
    )
    command = invoked_command()
    earlier = args.out / "README.md"
    kept = hand_sections(earlier.read_text()) if earlier.is_file() else []
    for path in write(result, args.out, validation, command, kept):
        print(f"wrote {path}")
    if kept:
        titles = "; ".join(k.splitlines()[0][3:] for k in kept)
        print(f"kept {len(kept)} section(s) written by hand; check them against the new numbers: {titles}")
    return 0
