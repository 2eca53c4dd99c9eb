"""The house reads like the data flow: no import circles, no arrow back up, no oversized module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("experiments", "analysis", "launch", "disagg", "traditional", "proxy", "fake_upstream", "monitor",
            "planner", "demo", "bench", "testbed", "sse")  # fmt: skip
# Who may import whom (first-party). experiments is the base every wing builds on; only the planner and
# the demo build on analysis, and nothing imports planner, demo or bench (the benchmarks, the soak and the
# GPU validation script: tools beside the packages, which may use any of them). Two floors import
# nothing first-party: testbed, the one-line error parser every CLI uses, the per-request route rule
# (split/local/threshold/load) the proxy applies and the planner simulates, and the entry point (which
# names its commands' modules as strings and imports them only when one runs); sse, the SSE lines the
# proxy writes and the client reads.
ALLOWED = {
    "sse": set(),
    "experiments": {"monitor", "sse"},
    "analysis": {"experiments"},
    "launch": {"experiments"},
    "disagg": {"experiments", "launch"},
    "traditional": {"experiments", "launch"},
    "proxy": {"sse"},
    "fake_upstream": {"sse"},
    "monitor": set(),
    "planner": {
        "experiments",
        "monitor",
        "analysis",
    },  # comes last in the data flow: reads what analysis finds
    "demo": {"experiments", "analysis", "launch", "disagg", "traditional"},  # drives the whole pipeline
    "bench": set(PACKAGES) - {"bench"},
    "testbed": set(),
}
for _deps in ALLOWED.values():
    _deps.add("testbed")
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from pkg import submodule` depends on the submodule
                sub = ROOT / node.module.replace(".", "/") / f"{alias.name}.py"
                out.add(f"{node.module}.{alias.name}" if sub.exists() else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    deps = {_module_name(p): _imports(p) for p in files}

    def resolve(name: str) -> str | None:
        while name not in deps:
            if "." not in name:
                return None
            name = name.rsplit(".", 1)[0]
        return name

    return {m: {r for d in ds if (r := resolve(d)) and r != m} for m, ds in deps.items()}


def test_packages_import_only_downward() -> None:
    bad = sorted(
        f"{m} -> {d}"
        for m, ds in _graph().items()
        for d in ds
        if d.split(".")[0] != m.split(".")[0] and d.split(".")[0] not in ALLOWED[m.split(".")[0]]
    )
    assert not bad, bad


def test_no_import_circle() -> None:
    graph, index, low, stack, on, cycles = _graph(), {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_source_file_over_the_limit() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, big
