"""Workloads: exact prompt lengths, seeded determinism, ShareGPT parsing, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from experiments.model_dir import Tokenizer, load_tokenizer, word_prompt, write_model_dir
from experiments.workloads import (
    RequestSpec,
    WorkloadError,
    fixed_workload,
    random_prompt,
    random_workload,
    sharegpt_workload,
)


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return load_tokenizer(write_model_dir(tmp_path_factory.mktemp("model")))


def words(n: int, start: int = 0) -> str:
    return word_prompt(list(range(start, start + n)))


def n_tokens(tok: Tokenizer, text: str) -> int:
    return len(tok.encode(text))


# ---- random prompts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 128, 1500])
def test_random_prompt_has_exactly_n_tokens_and_no_special_ones(tok: Tokenizer, n: int) -> None:
    text = random_prompt(tok, n, np.random.default_rng(n))
    ids = tok.encode(text)
    assert len(ids) == n
    assert not set(ids) & tok.special_ids
    assert text.split() == [f"t{i}" for i in ids]


def test_random_prompt_rejects_empty(tok: Tokenizer) -> None:
    with pytest.raises(WorkloadError, match=">= 1 token"):
        random_prompt(tok, 0, np.random.default_rng(0))


def _tokenizer(vocab: dict[str, int], fuse: bool = False) -> Tokenizer:
    impl = HFTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    impl.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if fuse:
        impl.decoder = decoders.Fuse()
    return Tokenizer("test", impl.get_vocab_size(), {vocab["<unk>"]}, impl)


def test_random_prompt_truncates_when_decoding_does_not_round_trip() -> None:
    # Token "x y" decodes to text that re-encodes as two tokens: the prompt must be cut back.
    tk = _tokenizer({"x": 0, "y": 1, "x y": 2, "<unk>": 3})
    for seed in range(20):
        text = random_prompt(tk, 6, np.random.default_rng(seed))
        assert len(tk.encode(text)) == 6


def test_random_prompt_gives_up_with_a_clear_error() -> None:
    # Decoding fuses all tokens into one unknown word, so no prompt of 3 tokens exists.
    tk = _tokenizer({"a": 0, "b": 1, "<unk>": 2}, fuse=True)
    with pytest.raises(WorkloadError, match="could not build a prompt of exactly 3 tokens"):
        random_prompt(tk, 3, np.random.default_rng(0))


# ---- random and fixed workloads -------------------------------------------------------------------------


def test_random_workload_is_seeded(tok: Tokenizer) -> None:
    a = random_workload(tok, 8, (5, 40), (1, 16), seed=1)
    assert a == random_workload(tok, 8, (5, 40), (1, 16), seed=1)
    b = random_workload(tok, 8, (5, 40), (1, 16), seed=2)
    assert [s.prompt for s in a] != [s.prompt for s in b]


def test_random_workload_lengths(tok: Tokenizer) -> None:
    specs = random_workload(tok, 200, (3, 6), (2, 4), seed=0)
    assert [s.index for s in specs] == list(range(200))
    assert {s.input_tokens for s in specs} == {3, 4, 5, 6}  # inclusive range, all values drawn
    assert {s.output_tokens for s in specs} == {2, 3, 4}
    assert all(n_tokens(tok, s.prompt) == s.input_tokens for s in specs)
    assert all(s.arrival_s is None for s in specs)
    fixed = random_workload(tok, 3, 10, 20, seed=0)
    assert [(s.input_tokens, s.output_tokens) for s in fixed] == [(10, 20)] * 3
    assert all(n_tokens(tok, s.prompt) == 10 for s in fixed)


@pytest.mark.parametrize(
    ("input_len", "output_len", "message"),
    [
        (0, 4, "input_len must be >= 1"),
        ((5, 2), 4, "min <= max"),
        (4, (1, 2, 3), "output_len must be an int or a \\(min, max\\) pair"),
        (4.5, 4, "input_len must be an int"),
    ],
)
def test_random_workload_bad_lengths(
    tok: Tokenizer, input_len: object, output_len: object, message: str
) -> None:
    with pytest.raises(WorkloadError, match=message):
        random_workload(tok, 2, input_len, output_len, seed=0)  # type: ignore[arg-type]


def test_fixed_workload(tok: Tokenizer) -> None:
    given = fixed_workload(tok, 3, prompt=words(9), input_len=None, output_len=5, seed=0)
    assert given == [RequestSpec(i, words(9), 9, 5) for i in range(3)]
    made = fixed_workload(tok, 4, prompt=None, input_len=200, output_len=(1, 3), seed=4)
    assert len({s.prompt for s in made}) == 1
    assert made[0].input_tokens == 200 == n_tokens(tok, made[0].prompt)
    assert made == fixed_workload(tok, 4, prompt=None, input_len=200, output_len=(1, 3), seed=4)
    assert made[0].prompt != fixed_workload(tok, 1, None, 200, 1, seed=5)[0].prompt
    with pytest.raises(WorkloadError, match="exactly one of prompt or input_len"):
        fixed_workload(tok, 1, prompt="t1", input_len=4, output_len=1, seed=0)
    with pytest.raises(WorkloadError, match="exactly one of prompt or input_len"):
        fixed_workload(tok, 1, prompt=None, input_len=None, output_len=1, seed=0)
    with pytest.raises(WorkloadError, match="number of requests must be >= 1"):
        fixed_workload(tok, 0, prompt="t1", input_len=None, output_len=1, seed=0)


# ---- ShareGPT ---------------------------------------------------------------------------------------


def conv(*turns: tuple[str, str]) -> dict:
    return {"id": "x", "conversations": [{"from": who, "value": text} for who, text in turns]}


SHAREGPT = [
    conv(("human", words(5)), ("gpt", words(6, 100))),  # ok: 5 -> 6
    conv(("human", words(3)), ("gpt", words(8))),  # prompt < 4 tokens
    conv(("human", words(6)), ("gpt", words(2))),  # reply < 4 tokens
    conv(("human", words(1025)), ("gpt", words(10))),  # prompt > 1024
    conv(("human", words(1000)), ("gpt", words(1049))),  # prompt + reply > 2048
    {"id": "no conversations"},
    conv(("human", words(9))),  # no reply
    conv(("system", words(50)), ("human", words(7)), ("gpt", words(4)), ("human", words(30))),  # ok: 7 -> 4
    conv(("human", words(20)), ("gpt", words(30)), ("human", words(4)), ("gpt", words(4))),  # ok: 20 -> 30
]
VALID = {(5, 6), (7, 4), (20, 30)}


@pytest.fixture
def sharegpt_file(tmp_path: Path) -> Path:
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(SHAREGPT))
    return path


def test_sharegpt_filters_like_vllm(tok: Tokenizer, sharegpt_file: Path) -> None:
    specs = sharegpt_workload(sharegpt_file, tok, 3, seed=0)
    assert {(s.input_tokens, s.output_tokens) for s in specs} == VALID
    assert [s.index for s in specs] == [0, 1, 2]
    for s in specs:
        assert n_tokens(tok, s.prompt) == s.input_tokens
        assert s.arrival_s is None
    assert words(7) in {s.prompt for s in specs}  # first human turn, not the system turn


def test_sharegpt_sampling_is_seeded(tok: Tokenizer, sharegpt_file: Path) -> None:
    a = sharegpt_workload(sharegpt_file, tok, 2, seed=3)
    assert a == sharegpt_workload(sharegpt_file, tok, 2, seed=3)
    orders = {tuple(s.prompt for s in sharegpt_workload(sharegpt_file, tok, 3, seed=k)) for k in range(10)}
    assert len(orders) > 1


def test_sharegpt_oversamples_with_a_warning(tok: Tokenizer, sharegpt_file: Path) -> None:
    with pytest.warns(UserWarning, match="only 3 usable conversations for 7 requests"):
        specs = sharegpt_workload(sharegpt_file, tok, 7, seed=0)
    assert len(specs) == 7
    assert {(s.input_tokens, s.output_tokens) for s in specs} == VALID
    assert [s.index for s in specs] == list(range(7))


def test_sharegpt_output_override_skips_the_min_reply_check(tok: Tokenizer, sharegpt_file: Path) -> None:
    specs = sharegpt_workload(sharegpt_file, tok, 5, seed=0, output_len=2)
    assert {s.input_tokens for s in specs} == {5, 6, 7, 20, 1000}
    assert {s.output_tokens for s in specs} == {2}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "dataset file not found"),
        ("{not json", "is not valid JSON"),
        ('{"conversations": []}', "expected a JSON list"),
        (json.dumps(SHAREGPT[1:3]), "no usable conversations"),
    ],
)
def test_sharegpt_errors(tok: Tokenizer, tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "data.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(WorkloadError, match=message) as info:
        sharegpt_workload(path, tok, 2, seed=0)
    assert "\n" not in str(info.value)
