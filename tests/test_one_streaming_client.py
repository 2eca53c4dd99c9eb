"""One of each, for the streamed request: one SSE client, one prompt builder, one timing-comment marker.

Source text checks (as tests/test_architecture.py checks layering): a second definition fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

from sse import TIMING_COMMENT_PREFIX

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"results", "data", "reference", "node_modules"}
CLIENT = "experiments/client.py"
RELAY = "proxy/streaming.py"  # the proxy forwards upstream bodies as they come: a relay, not a client
# aiohttp's StreamReader methods: a module that calls one on a response's `.content` reads a streamed body
# itself instead of through experiments.client.send_request.
READS = {"iter_any", "iter_chunked", "iter_chunks", "readuntil", "readline", "readany", "readchunk"}


def _sources(with_tests: bool) -> dict[str, ast.Module]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if (
            rel.parts[0].startswith(".")
            or rel.parts[0] in SKIP
            or (rel.parts[0] == "tests" and not with_tests)
        ):
            continue
        out[rel.as_posix()] = ast.parse(path.read_text(), str(rel))
    return out


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constants of a module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def test_the_timing_marker_is_written_once() -> None:
    marker = TIMING_COMMENT_PREFIX.decode().strip()  # `: proxy-timing`
    found = []
    for rel, tree in _sources(with_tests=True).items():
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, bytes):
                value = value.decode(errors="replace")
            if isinstance(value, str) and value.lstrip().startswith(marker) and id(node) not in docs:
                found.append(f"{rel}:{node.lineno}")
    assert [f.split(":")[0] for f in found] == ["sse/__init__.py"], found


def test_one_random_prompt() -> None:
    defs = [
        f"{rel}:{node.lineno}"
        for rel, tree in _sources(with_tests=True).items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "random_prompt"
    ]
    assert [d.split(":")[0] for d in defs] == ["experiments/workloads.py"], defs


def test_only_the_client_reads_streamed_bodies() -> None:
    """Runner, probe, benches and soak send their streamed requests through experiments.client (tests may
    read raw bytes on purpose)."""
    readers = set()
    for rel, tree in _sources(with_tests=False).items():
        for node in ast.walk(tree):
            on_content = (  # resp.content.readuntil, or `async for line in resp.content`
                isinstance(node, ast.Attribute)
                and node.attr in READS
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "content"
            ) or (
                isinstance(node, ast.AsyncFor)
                and isinstance(node.iter, ast.Attribute)
                and node.iter.attr == "content"
            )
            if on_content:
                readers.add(rel)
    assert sorted(readers) == [CLIENT, RELAY], readers
