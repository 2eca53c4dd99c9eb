"""compare_performance.py on the committed 2 x H200 runs gives the numbers it gave before the schema
change (schema 1.0, experiments/compare.py at commit 9cdf255).

tests/analysis/expected/ holds what that code produced: the tables as JSON (dumped by
expected/dump_before_1_0.py.txt) and two report.md files. Intended differences: the runs table's
"mode" column is now "setup" (these runs predate the setup record, so it shows the mode), a note says
"setups" where it said "modes", the TTFT split's client-side part is recomputed from the records
(the runner that wrote these files summed it in another order: equal to 1e-12), and report.md has the
server-side sections (analysis/server_report.py, tested in test_server_report.py), left out here, as
are the energy-by-phase and host rows added since (experiments.attribution, tested in
tests/experiments/test_attribution.py and test_attribution_real.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from analysis.runs import NA, load_runs
from analysis.server_report import SECTION_TITLES
from analysis.tables import build_comparison, phase_rows, stage_rows, sweep_rows
from tests.analysis.golden import REPO, cli

EXPECTED = Path(__file__).resolve().parent / "expected"
H = Path("results/h200x2")
ADDED_SECTIONS = {m.section for m in phase_rows()}
ADDED_ROWS = tuple(f"| {m.label} ({m.unit}) |" if m.unit else f"| {m.label} |" for m in phase_rows())
SETS: dict[str, tuple[list[str], bool, dict[str, float] | None]] = {
    "rate4": (["20261122-044458-traditional-rate4", "20261122-044143-disagg-rate4"], False, None),
    "rate10_and_passthrough": (
        [
            "20261122-045929-traditional-rate10-seed1",
            "20261122-045741-disagg-rate10-seed1",
            "20261122-044803-passthrough-rate4",
            "20261122-044911-passthrough-rate10",
        ],
        True,
        None,
    ),
    "sendtype": (
        [
            "20261122-043639-disagg-sendtype-GET-ch16",
            "20261122-043448-disagg-sendtype-PUT_ASYNC-ch16",
            "20261122-043819-disagg-sendtype-PUT-ch16",
            "20261122-043954-disagg-sendtype-PUT_ASYNC-ch8",
            "20261122-045056-disagg-sendtype-PUT_ASYNC-ch16-switchinterval0.5ms",
        ],
        False,
        None,
    ),
    "rate4_slo": (
        ["20261122-044458-traditional-rate4", "20261122-044143-disagg-rate4"],
        False,
        {"ttft": 100.0, "tpot": 6.0},
    ),
}


def cell(v: Any) -> Any:
    """A table value as the 1.0 dump wrote it."""
    if isinstance(v, NA):
        return {"na": v.reason}
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return v


def dump(names: list[str], force: bool, slo: dict[str, float] | None) -> dict[str, Any]:
    """The same structure as the 1.0 dump, from the new analysis."""
    cmp = build_comparison(load_runs([REPO / H / n for n in names], slo), slo, force=force)
    return {
        "paths": [str(H / n) for n in names],
        "force": force,
        "runs": [
            {
                "label": r.label,
                "name": r.name,
                "mode": r.setup_name,  # these runs predate the setup record: their mode
                "load": r.load_text,
                "complete": r.complete,
            }
            for r in cmp.runs
        ],
        "differences": cmp.differences,
        "sweep": cmp.sweep,
        "slo": cmp.slo,
        "groups": [
            {
                "load": g.load_text,
                "runs": [r.label for r in g.runs],
                "baseline": g.baseline,
                "rows": [
                    {
                        "title": row.title,
                        "values": [cell(v) for v in row.values],
                        "ratios": row.ratios,
                        "best": row.best,
                        "verdict": g.verdict(row),
                    }
                    for row in g.rows
                    if row.section not in ADDED_SECTIONS
                ],
            }
            for g in cmp.groups
        ],
        "stage_rows": {r.label: [list(x) for x in (stage_rows(r) or [])] for r in cmp.runs},
        "sweep_rows": [
            {
                "run": s.run,
                "mode": s.setup,
                "offered": s.offered,
                "achieved_rps": s.achieved_rps,
                "ttft_p50": s.ttft_p50,
                "ttft_p99": s.ttft_p99,
                "tpot_p50": s.tpot_p50,
                "e2e_p50": s.e2e_p50,
                "goodput": cell(s.goodput),
                "j_per_request": cell(s.j_per_request),
                "complete": s.complete,
            }
            for s in sweep_rows(cmp.runs)
        ],
        "notes": [n.replace("no ratio across setups", "no ratio across modes") for n in cmp.notes],
    }


@pytest.fixture(scope="module")
def before() -> dict[str, Any]:
    return orjson.loads((EXPECTED / "h200x2_tables.json").read_bytes())


@pytest.mark.parametrize("name", list(SETS))
def test_tables_on_committed_h200_runs_are_unchanged(name: str, before: dict[str, Any]) -> None:
    expected = before[name]
    got = orjson.loads(orjson.dumps(dump(*SETS[name])))  # through JSON, as the expected values were
    exp_stages, got_stages = expected.pop("stage_rows"), got.pop("stage_rows")
    assert got == expected  # every table value, ratio, verdict, label, sweep row and note, exactly
    assert got_stages.keys() == exp_stages.keys()
    for label, rows in exp_stages.items():
        for ours, theirs in zip(got_stages[label], rows, strict=True):
            assert ours[0] == theirs[0]
            for x, y in zip(ours[1:], theirs[1:], strict=True):
                assert (x is None and y is None) or x == pytest.approx(y, rel=1e-12, abs=1e-12)


def _report_lines(text: str) -> list[str]:
    """The report's lines but the date and the server-side sections (added since)."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            skipping = line in SECTION_TITLES
        if not skipping and not line.startswith(("Generated ", *ADDED_ROWS)):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def _with_engine_column(report: str) -> str:
    """The runs table gained an engine column (vLLM version, connector); these runs recorded no setup."""
    lines, in_runs = report.splitlines(), False
    for i, line in enumerate(lines):
        if line.startswith("## "):
            in_runs = line == "## Runs"
        elif in_runs and line.startswith("|"):
            cells = line.split("|")
            header = cells[1].strip() == "run"
            rule = line.startswith("|---")
            cells.insert(5, "---" if rule else " engine " if header else " n/a (no serving setup recorded) ")
            lines[i] = "|".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("name", "expected_report", "flags"),
    [
        ("rate4", "report_rate4.md", []),
        ("rate10_and_passthrough", "report_rate10_passthrough.md", ["--force"]),
    ],
)
def test_report_on_committed_h200_runs_is_unchanged(
    name: str, expected_report: str, flags: list[str], tmp_path: Path
) -> None:
    names, _, _ = SETS[name]
    proc = cli(*(H / n for n in names), "--output-dir", tmp_path, "--no-plots", *flags)
    assert proc.returncode == 0, proc.stderr
    expected = (EXPECTED / expected_report).read_text()
    expected = expected.replace("| run | mode | offered load |", "| run | setup | offered load |")
    expected = expected.replace("no ratio across modes there", "no ratio across setups there")
    expected = _with_engine_column(expected)
    assert _report_lines((tmp_path / "report.md").read_text()) == _report_lines(expected)
