"""One vocabulary for serving setups: only experiments/schema/vocabulary.py spells out which mode is which
kind, the GPU roles of each mode, the campaign setups, and how a planner form (single, replicas:N, xPyD) is
parsed or printed. Everything else imports it; this test reads every source file's syntax tree to keep it so.
"""

from __future__ import annotations

import ast
import re

from experiments.schema import CAMPAIGN_SETUPS, KINDS, MODES
from tests.test_architecture import PACKAGES, ROOT

OWNER = ROOT / "experiments" / "schema" / "vocabulary.py"
SCRIPTS = ("run_experiment.py", "compare_performance.py")
# A regular expression that reads a form: "(\d+)p(\d+)d", "replicas:(\d+)".
FORM_PATTERN = re.compile(r"\(\\d\+?\)\s*p\s*\(\\d\+?\)\s*d|replicas:\(", re.IGNORECASE)


def _strings(nodes: list[ast.expr | None]) -> list[str]:
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _prints_a_form(node: ast.JoinedStr) -> bool:
    """f"{x}P{y}D..." or f"replicas:{n}"."""
    parts = node.values
    for i, part in enumerate(parts[:-1]):
        if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
            continue
        after = parts[i + 1]
        if part.value.endswith("replicas:") and isinstance(after, ast.FormattedValue):
            return True
        then = parts[i + 2] if i + 2 < len(parts) else None
        if (
            part.value == "P"
            and i > 0
            and isinstance(parts[i - 1], ast.FormattedValue)
            and isinstance(after, ast.FormattedValue)
            and isinstance(then, ast.Constant)
            and str(then.value).startswith("D")
        ):
            return True
    return False


def violations(tree: ast.AST) -> list[str]:
    """What in `tree` re-defines the vocabulary, one line each (line number: what)."""
    modes, campaigns = set(MODES), set(CAMPAIGN_SETUPS)
    campaign_only = campaigns - set(KINDS)  # "single" and "replicas" are kinds too
    found = []
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Dict):
            keys, values = set(_strings(node.keys)), set(_strings(node.values))
            if len(keys & modes) >= 2 or len(values & modes) >= 2:
                found.append(f"{where}: a table of modes (mode -> kind, roles or label)")
            if len(keys & campaigns) >= 2 and keys & campaign_only:
                found.append(f"{where}: a table of campaign setups")
        elif isinstance(node, ast.Tuple | ast.List | ast.Set) and modes <= set(_strings(node.elts)):
            found.append(f"{where}: the list of modes")
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and FORM_PATTERN.search(node.value)
        ):
            found.append(f"{where}: a pattern that parses setup forms")
        elif isinstance(node, ast.JoinedStr) and _prints_a_form(node):
            found.append(f"{where}: an f-string that prints a setup form")
    return found


def test_the_checker_finds_each_kind_of_redefinition() -> None:
    planted = {
        'KIND_OF_MODE = {"traditional": "single", "disagg": "xpyd"}': "table of modes",
        'ROLES = {"disagg": ("prefill", "decode"), "passthrough": ("serving", "serving")}': "table of modes",
        'MODE = {"1 instance": "traditional", "2 replicas": "passthrough"}': "table of modes",
        'SETUPS = {"single": 1, "pd-nixl": 2}': "campaign setups",
        'MODES = ("traditional", "disagg", "passthrough")': "list of modes",
        'X = re.compile(r"^(\\d+)p(\\d+)d$")': "parses setup forms",
        'X = re.compile(r"^replicas:(\\d+)$")': "parses setup forms",
        'name = f"{n_p}P{n_d}D {connector}"': "prints a setup form",
        'name = f"replicas:{n}"': "prints a setup form",
    }
    for source, what in planted.items():
        found = violations(ast.parse(source))
        assert len(found) == 1 and what in found[0], (source, found)
    harmless = [
        'KIND_COLORS = {"single": "tab:blue", "xpyd": "tab:orange", "replicas": "tab:green"}',
        'run(["--mode", "traditional"])',
        'FIXED = ("1P3D", "2P2D", "replicas:4")',
        'msg = f"{a}P and {b}D"',
    ]
    assert [v for s in harmless for v in violations(ast.parse(s))] == []


def test_only_the_vocabulary_module_defines_the_vocabulary() -> None:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")] + [ROOT / s for s in SCRIPTS]
    assert OWNER in files and len(files) > 100
    bad = {
        str(p.relative_to(ROOT)): found
        for p in files
        if p != OWNER and (found := violations(ast.parse(p.read_text())))
    }
    assert not bad, bad
    assert len(violations(ast.parse(OWNER.read_text()))) >= 4  # it is where they live
