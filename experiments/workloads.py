"""Seeded request workloads: random, fixed and ShareGPT; the prompt builders trace replay shares
(experiments.traces).

Every builder takes a seed and returns the same list of `RequestSpec` for the same inputs. Prompt token
counts are made exact the way vLLM's RandomDataset does it: sample ids, decode, re-encode, adjust, retry.
A tokenizer that can only count (the server's /tokenize, experiments.server_tokenizer) gets prompts of
random words instead, cut to the exact count by a binary search over the text's length.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import orjson

# vLLM's ShareGPT pruning (benchmarks/datasets.py: is_valid_sequence).
SHAREGPT_MIN_LEN = 4
SHAREGPT_MAX_PROMPT_LEN = 1024
SHAREGPT_MAX_TOTAL_LEN = 2048
PROMPT_MAX_TRIES = 10

_HUMAN_ROLES = ("human", "user")
_GPT_ROLES = ("gpt", "chatgpt", "assistant")


class WorkloadError(Exception):
    """A workload cannot be built (missing file, bad format, impossible prompt length)."""


class TokenCounter(Protocol):
    """What every workload needs: the token ids of a text (their count, mostly)."""

    def encode(self, text: str) -> list[int]: ...


@runtime_checkable
class TokenizerLike(TokenCounter, Protocol):
    """A full tokenizer: random prompts are sampled as token ids, as vLLM does."""

    vocab_size: int
    special_ids: set[int]

    def decode(self, ids: list[int]) -> str: ...


@dataclass(frozen=True)
class RequestSpec:
    """One request to send.

    `input_tokens` is the expected prompt token count when known; `output_tokens` is the `max_tokens` to
    request; `arrival_s` is the replay offset from the start (trace replays only, else None).
    """

    index: int
    prompt: str
    input_tokens: int | None
    output_tokens: int
    arrival_s: float | None = None


LengthSpec = int | tuple[int, int]


def parse_length(text: str) -> LengthSpec:
    """A length as every CLI and campaign shape writes it: '256', or an inclusive range '128:512'."""
    lo, sep, hi = text.partition(":")
    try:
        pair = (int(lo), int(hi) if sep else int(lo))
    except ValueError:
        pair = (0, 0)
    if not 1 <= pair[0] <= pair[1]:
        raise ValueError(f"{text!r} is not a length >= 1 or a range MIN:MAX")
    return pair if sep else pair[0]


# ---------------------------------------------------------------------------------------------------------
# Prompts of an exact token count
# ---------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _allowed_ids(vocab_size: int, special_ids: frozenset[int]) -> np.ndarray:
    return np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.fromiter(special_ids, dtype=np.int64))


def sample_ids(tokenizer: TokenizerLike, n: int, rng: np.random.Generator) -> list[int]:
    allowed = _allowed_ids(int(tokenizer.vocab_size), frozenset(tokenizer.special_ids))
    return allowed[rng.integers(0, len(allowed), size=n)].tolist()


def fit_prompt(tokenizer: TokenizerLike, ids: list[int], n_tokens: int, rng: np.random.Generator) -> str:
    """Decode `ids` and adjust until the text re-encodes to exactly `n_tokens` tokens."""
    for _ in range(PROMPT_MAX_TRIES):
        text = tokenizer.decode(ids)
        ids = tokenizer.encode(text)
        if len(ids) == n_tokens:
            return text
        short = n_tokens - len(ids)
        ids = ids[:n_tokens] if short < 0 else ids + sample_ids(tokenizer, short, rng)
    raise WorkloadError(
        f"could not build a prompt of exactly {n_tokens} tokens after {PROMPT_MAX_TRIES} tries "
        f"(decode/encode does not round-trip for this tokenizer); try another seed or length"
    )


def random_prompt(tokenizer: TokenCounter, n_tokens: int, rng: np.random.Generator) -> str:
    """Text that encodes to exactly `n_tokens` tokens (no special tokens): random non-special tokens, or
    random words with a tokenizer that can only count."""
    if n_tokens < 1:
        raise WorkloadError(f"prompt length must be >= 1 token, got {n_tokens}")
    if isinstance(tokenizer, TokenizerLike):
        return fit_prompt(tokenizer, sample_ids(tokenizer, n_tokens, rng), n_tokens, rng)
    return counted_prompt(tokenizer, random_words(n_tokens, rng), n_tokens, rng)


# Words of counted prompts: `t<i>`, the testbed word-level tokenizer's token i (experiments.model_dir),
# so that its prompts look alike on both paths; a BPE tokenizer makes each a few tokens.
_WORD_IDS = 100_000


def random_words(n: int, rng: np.random.Generator) -> list[str]:
    return [f"t{i}" for i in rng.integers(0, _WORD_IDS, size=n).tolist()]


class WordCounter:
    """The testbed word-level tokenizer's count without its files: one token per whitespace-separated
    word. For prompts to a server whose tokenizer is not at hand (the planner's probe): `random_prompt`
    then gives `n` random words, `n` tokens on that tokenizer; any other counts them in its `usage`."""

    def encode(self, text: str) -> list[int]:
        return [0] * len(text.split())  # every id is 0: only the count is meaningful


def counted_prompt(tokenizer: TokenCounter, words: list[str], n_tokens: int, rng: np.random.Generator) -> str:
    """The shortest prefix of `words` joined by spaces (cut at any character) that counts `n_tokens`.

    Every word is at least one token, so `n_tokens` words are enough text. Between the longest prefix
    under `n_tokens` and the next character the count may jump by two; then the words from the crossing
    on are drawn again (the prefix before it is kept: shared blocks stay shared).
    """
    for _ in range(PROMPT_MAX_TRIES):
        text = " ".join(words)
        count = len(tokenizer.encode(text))
        while count < n_tokens:
            words = words + random_words(n_tokens - count, rng)
            text, before = " ".join(words), count
            count = len(tokenizer.encode(text))
            if count <= before:
                raise WorkloadError(f"the tokenizer counts no tokens in added words ({text[-60:]!r})")
        if count == n_tokens:
            return text
        lo, hi = 0, len(text)  # count(text[:lo]) < n_tokens <= count(text[:hi]) == count
        while hi - lo > 1:
            mid = (lo + hi) // 2
            n_mid = len(tokenizer.encode(text[:mid]))
            if n_mid >= n_tokens:
                hi, count = mid, n_mid
            else:
                lo = mid
        if count == n_tokens:
            return text[:hi]
        kept = text[:lo].split(" ")[:-1]  # whole words before the one holding the crossing
        words = kept + random_words(n_tokens - len(kept), rng)
    raise WorkloadError(
        f"could not build a prompt of exactly {n_tokens} tokens from words after {PROMPT_MAX_TRIES} tries; "
        "try another seed or length"
    )


# ---------------------------------------------------------------------------------------------------------
# Synthetic workloads
# ---------------------------------------------------------------------------------------------------------


def _check_length(name: str, spec: LengthSpec) -> tuple[int, int]:
    pair = (spec, spec) if isinstance(spec, int | np.integer) else spec
    if not (
        isinstance(pair, tuple | list)
        and len(pair) == 2
        and all(isinstance(v, int | np.integer) for v in pair)
    ):
        raise WorkloadError(f"{name} must be an int or a (min, max) pair of ints, got {spec!r}")
    lo, hi = pair
    if lo < 1 or hi < lo:
        raise WorkloadError(f"{name} must be >= 1 (and min <= max for a range), got {spec!r}")
    return int(lo), int(hi)


def _draw_lengths(name: str, spec: LengthSpec, n: int, rng: np.random.Generator) -> list[int]:
    lo, hi = _check_length(name, spec)
    return rng.integers(lo, hi + 1, size=n).tolist()


def _check_count(n: int) -> None:
    if n < 1:
        raise WorkloadError(f"number of requests must be >= 1, got {n}")


def random_workload(
    tokenizer: TokenCounter, n: int, input_len: LengthSpec, output_len: LengthSpec, seed: int
) -> list[RequestSpec]:
    """`n` random prompts; lengths are fixed ints or inclusive (min, max) ranges drawn uniformly."""
    _check_count(n)
    rng = np.random.default_rng(seed)
    ins = _draw_lengths("input_len", input_len, n, rng)
    outs = _draw_lengths("output_len", output_len, n, rng)
    return [
        RequestSpec(
            index=i, prompt=random_prompt(tokenizer, ins[i], rng), input_tokens=ins[i], output_tokens=outs[i]
        )
        for i in range(n)
    ]


def fixed_workload(
    tokenizer: TokenCounter,
    n: int,
    prompt: str | None,
    input_len: int | None,
    output_len: LengthSpec,
    seed: int,
) -> list[RequestSpec]:
    """`n` requests sharing one prompt: the given text, or a random prompt of `input_len` tokens."""
    _check_count(n)
    if (prompt is None) == (input_len is None):
        raise WorkloadError("give exactly one of prompt or input_len for a fixed workload")
    rng = np.random.default_rng(seed)
    if prompt is None:
        assert input_len is not None
        prompt = random_prompt(tokenizer, input_len, rng)
    if not prompt.strip():
        raise WorkloadError("the fixed prompt is empty; give some text or an input_len")
    n_in = len(tokenizer.encode(prompt))
    outs = _draw_lengths("output_len", output_len, n, rng)
    return [RequestSpec(index=i, prompt=prompt, input_tokens=n_in, output_tokens=outs[i]) for i in range(n)]


# ---------------------------------------------------------------------------------------------------------
# ShareGPT
# ---------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise WorkloadError(f"dataset file not found: {path}")
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise WorkloadError(f"{path} is not valid JSON: {exc}") from exc


def _first_exchange(entry: Any) -> tuple[str, str] | None:
    """(first human turn, first gpt reply after it), or None when the entry has no such pair."""
    turns = entry.get("conversations") if isinstance(entry, dict) else None
    if not isinstance(turns, list):
        return None
    human: str | None = None
    for turn in turns:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            continue
        role = turn.get("from")
        if human is None and role in _HUMAN_ROLES:
            human = turn["value"]
        elif human is not None and role in _GPT_ROLES:
            return human, turn["value"]
    return None


def _sharegpt_ok(prompt_len: int, output_len: int, fixed_output: bool) -> bool:
    """vLLM's `is_valid_sequence` with its default limits."""
    too_short = prompt_len < SHAREGPT_MIN_LEN or (not fixed_output and output_len < SHAREGPT_MIN_LEN)
    too_long = prompt_len > SHAREGPT_MAX_PROMPT_LEN or prompt_len + output_len > SHAREGPT_MAX_TOTAL_LEN
    return not (too_short or too_long)


def sharegpt_workload(
    path: str | Path, tokenizer: TokenCounter, n: int, seed: int, output_len: int | None = None
) -> list[RequestSpec]:
    """`n` requests sampled (seeded, without replacement) from a ShareGPT JSON file.

    The prompt is the first human turn; `output_tokens` is the token count of the first gpt reply unless
    `output_len` is given. Pairs are pruned like vLLM (prompt or reply < 4 tokens, prompt > 1024,
    prompt + reply > 2048). With fewer usable pairs than `n`, samples with replacement and warns.
    """
    _check_count(n)
    if output_len is not None and output_len < 1:
        raise WorkloadError(f"output_len must be >= 1, got {output_len}")
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise WorkloadError(f"{path}: expected a JSON list of {{'conversations': [...]}} entries")
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, int, int]] = []
    # Tokenize lazily in a seeded order: a large file costs only what is needed.
    for i in rng.permutation(len(data)).tolist():
        pair = _first_exchange(data[i])
        if pair is None:
            continue
        prompt, reply = pair
        n_in = len(tokenizer.encode(prompt))
        n_out = len(tokenizer.encode(reply)) if output_len is None else output_len
        if _sharegpt_ok(n_in, n_out, output_len is not None):
            chosen.append((prompt, n_in, n_out))
            if len(chosen) == n:
                break
    if not chosen:
        raise WorkloadError(
            f"{path}: no usable conversations (need a human turn then a gpt reply, "
            f"prompt {SHAREGPT_MIN_LEN}-{SHAREGPT_MAX_PROMPT_LEN} tokens)"
        )
    if len(chosen) < n:
        warnings.warn(
            f"{path}: only {len(chosen)} usable conversations for {n} requests; sampling with replacement",
            stacklevel=2,
        )
        extra = rng.integers(0, len(chosen), size=n - len(chosen)).tolist()
        chosen += [chosen[j] for j in extra]
    return [
        RequestSpec(index=i, prompt=p, input_tokens=a, output_tokens=b) for i, (p, a, b) in enumerate(chosen)
    ]
