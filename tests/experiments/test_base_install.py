"""The runner on the base install (no vLLM extra): what it imports is declared in pyproject's base
dependencies, and without the model's tokenizer files it counts prompt tokens with the server's
/tokenize (the fake's counts words; a proxy has none, so the instances behind it are asked)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiohttp import web

from experiments.model_dir import write_model_dir
from experiments.schema import RunResult, ServingSetup
from experiments.server_tokenizer import ServerTokenizer, TokenizerUnavailable, server_tokenizer
from experiments.serving_setup import instance_urls
from experiments.traces import trace_workload
from experiments.workloads import random_workload
from fake_upstream import FakeUpstream
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
OUR_PACKAGES = {"experiments", "monitor", "fake_upstream", "launch", "proxy", "disagg", "traditional"}
NOT_HERE = "/nowhere/meta-llama/Llama-3.1-8B"  # a tokenizer path that does not exist on this machine

# Imports what a run imports (the tokenizer library through a local model directory), then prints the
# distributions of every third-party module loaded (not those the interpreter's start-up loaded).
_IMPORTS = """
import sys, importlib.metadata as md
before = set(sys.modules)
import run_experiment, experiments.runner, experiments.vllm_result
from experiments.model_dir import load_tokenizer
load_tokenizer(sys.argv[1])
dists = md.packages_distributions()
top = {m.split(".")[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)
print(sorted({d for m in top for d in dists.get(m, [])}))
"""


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """`names` and everything they require (extras left out), as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in reqs if "extra ==" not in r]
    return seen


def test_what_the_runner_imports_is_a_base_dependency(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "m")
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTS, str(model)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    imported = {_name(d) for d in orjson.loads(proc.stdout.strip().replace("'", '"'))}
    base = {_name(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    ours = {_name(d) for d in imported if d.startswith("disagg-energy")}
    assert "tokenizers" in imported and "tokenizers" in base
    assert imported - ours - _closure(base) == set(), "imported but not declared in the base dependencies"


# -- the server's /tokenize -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(root=NOT_HERE) as srv:
        yield srv


@pytest.fixture(scope="module")
def no_tokenize() -> Iterator[str]:
    """A server that answers 404 to everything (as our proxy does to /tokenize)."""
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(web.Application())
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_the_first_server_that_tokenizes_is_used(fake: FakeUpstream, no_tokenize: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    tok = server_tokenizer([no_tokenize, dead, fake.url], "fake-model")
    try:
        assert tok.url == fake.url and len(tok.encode("t1 t2 t3")) == 3
    finally:
        tok.close()
    with pytest.raises(TokenizerUnavailable, match=r"404.*refused|404.*Connection"):
        server_tokenizer([no_tokenize, dead], "fake-model")


def test_instance_urls_come_from_the_setup_or_the_proxy_view() -> None:
    live = {"proxy": {"instances": {"prefill": [{"url": "http://p"}], "decode": [{"url": "http://d"}]}}}
    assert instance_urls(ServingSetup(kind="xpyd", proxy_setup=live)) == ["http://p", "http://d"]
    assert instance_urls(ServingSetup(kind="unknown")) == []


def test_counted_prompts_have_the_exact_length(fake: FakeUpstream) -> None:
    tok = ServerTokenizer(fake.url, "fake-model")
    try:
        specs = random_workload(tok, 6, (5, 40), 4, seed=1)
        again = random_workload(tok, 6, (5, 40), 4, seed=1)
    finally:
        tok.close()
    assert [s.prompt for s in specs] == [s.prompt for s in again]  # seeded
    assert [len(s.prompt.split()) for s in specs] == [s.input_tokens for s in specs]  # the fake counts words
    assert len({s.prompt for s in specs}) == 6


class PairCounter:
    """A tokenizer that can only count, with BPE-like jumps: each word is ceil(len / 2) tokens."""

    def encode(self, text: str) -> list[int]:
        return [0] * sum((len(w) + 1) // 2 for w in text.split())


def test_counted_prompts_are_exact_when_counts_jump() -> None:
    for seed in range(5):
        specs = random_workload(PairCounter(), 20, (1, 300), 1, seed)
        assert [len(PairCounter().encode(s.prompt)) for s in specs] == [s.input_tokens for s in specs]


def test_counted_trace_prompts_share_the_blocks_of_their_hash_ids(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    rows = [
        {"timestamp": 0, "input_length": 90, "output_length": 2, "hash_ids": [7, 8]},
        {"timestamp": 10, "input_length": 70, "output_length": 2, "hash_ids": [7, 9]},
    ]
    trace.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    a, b = trace_workload(trace, PairCounter(), seed=3, block_size=16)
    assert [len(PairCounter().encode(s.prompt)) for s in (a, b)] == [90, 70]
    shared = np.argmin([x == y for x, y in zip(a.prompt, b.prompt, strict=False)])
    assert a.prompt[:shared] == b.prompt[:shared] and len(a.prompt[:shared].split()) >= 16


def test_a_run_without_the_tokenizer_files_and_libraries_counts_with_the_server(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    """The base install: tokenizers and transformers cannot be imported, the model path is not here."""
    blocked = "import sys; sys.modules['tokenizers'] = sys.modules['transformers'] = None; "
    run = "import runpy; sys.argv = ['run_experiment.py', *sys.argv[1:]]; "
    run += "runpy.run_path('run_experiment.py', run_name='__main__')"
    args = [
        "--endpoint", fake.url, "--input-len", "12", "--output-len", "3", "--num-requests", "4",
        "--rate", "50", "--warmup", "1", "--monitor", "none", "--idle-seconds", "0",
        "--output-dir", str(tmp_path), "--run-name", "remote",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", blocked + run, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    said = f"{NOT_HERE!r} is not on this machine; counting prompt tokens with {fake.url}/tokenize"
    assert said in proc.stderr
    res = RunResult.load(tmp_path / "remote")
    assert res.metadata.tokenizer == NOT_HERE and res.metadata.tokenizer_source == fake.url
    assert res.summary is not None and res.summary.completed == 4
    assert all(r.prompt_tokens == r.input_tokens_expected == 12 for r in res.records)
