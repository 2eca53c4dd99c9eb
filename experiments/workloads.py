"""Seeded request workloads: random, fixed, ShareGPT and trace replay (Azure CSV, Mooncake JSONL).

Every builder takes a seed and returns the same list of `RequestSpec` for the same inputs. Prompt token
counts are made exact the way vLLM's RandomDataset does it: sample ids, decode, re-encode, adjust, retry.
A tokenizer that can only count (the server's /tokenize, experiments.server_tokenizer) gets prompts of
random words instead, cut to the exact count by a binary search over the text's length.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import orjson

# vLLM's ShareGPT pruning (benchmarks/datasets.py: is_valid_sequence).
SHAREGPT_MIN_LEN = 4
SHAREGPT_MAX_PROMPT_LEN = 1024
SHAREGPT_MAX_TOTAL_LEN = 2048
# Mooncake traces: one hash id per block of this many prompt tokens.
MOONCAKE_BLOCK_SIZE = 512
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
    request; `arrival_s` is the replay offset from the start (trace workloads only, else None).
    """

    index: int
    prompt: str
    input_tokens: int | None
    output_tokens: int
    arrival_s: float | None = None


LengthSpec = int | tuple[int, int]


# ---------------------------------------------------------------------------------------------------------
# Prompts of an exact token count
# ---------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _allowed_ids(vocab_size: int, special_ids: frozenset[int]) -> np.ndarray:
    return np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.fromiter(special_ids, dtype=np.int64))


def _sample_ids(tokenizer: TokenizerLike, n: int, rng: np.random.Generator) -> list[int]:
    allowed = _allowed_ids(int(tokenizer.vocab_size), frozenset(tokenizer.special_ids))
    return allowed[rng.integers(0, len(allowed), size=n)].tolist()


def _fit_prompt(tokenizer: TokenizerLike, ids: list[int], n_tokens: int, rng: np.random.Generator) -> str:
    """Decode `ids` and adjust until the text re-encodes to exactly `n_tokens` tokens."""
    for _ in range(PROMPT_MAX_TRIES):
        text = tokenizer.decode(ids)
        ids = tokenizer.encode(text)
        if len(ids) == n_tokens:
            return text
        if len(ids) > n_tokens:
            ids = ids[:n_tokens]
        else:
            ids = ids + _sample_ids(tokenizer, n_tokens - len(ids), rng)
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
        return _fit_prompt(tokenizer, _sample_ids(tokenizer, n_tokens, rng), n_tokens, rng)
    return _counted_prompt(tokenizer, _random_words(n_tokens, rng), n_tokens, rng)


# Words of counted prompts: `t<i>`, the testbed word-level tokenizer's token i (experiments.model_dir),
# so that its prompts look alike on both paths; a BPE tokenizer makes each a few tokens.
_WORD_IDS = 100_000


def _random_words(n: int, rng: np.random.Generator) -> list[str]:
    return [f"t{i}" for i in rng.integers(0, _WORD_IDS, size=n).tolist()]


def _counted_prompt(
    tokenizer: TokenCounter, words: list[str], n_tokens: int, rng: np.random.Generator
) -> str:
    """The shortest prefix of `words` joined by spaces (cut at any character) that counts `n_tokens`.

    Every word is at least one token, so `n_tokens` words are enough text. Between the longest prefix
    under `n_tokens` and the next character the count may jump by two; then the words from the crossing
    on are drawn again (the prefix before it is kept: shared blocks stay shared).
    """
    for _ in range(PROMPT_MAX_TRIES):
        text = " ".join(words)
        count = len(tokenizer.encode(text))
        while count < n_tokens:
            words = words + _random_words(n_tokens - count, rng)
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
        words = kept + _random_words(n_tokens - len(kept), rng)
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


# ---------------------------------------------------------------------------------------------------------
# Trace replay
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TraceRow:
    timestamp_s: float
    input_len: int
    output_len: int
    hash_ids: tuple[int, ...] = ()


# Column spellings accepted for CSV traces: (timestamp column, seconds per unit or None for datetime text).
_CSV_TIME_COLUMNS: tuple[tuple[str, float | None], ...] = (
    ("TIMESTAMP", None),  # Azure LLM inference trace
    ("timestamp_s", 1.0),
    ("timestamp", 1.0),
    ("timestamp_ms", 1e-3),
)
_CSV_LENGTH_COLUMNS = (("ContextTokens", "GeneratedTokens"), ("input_length", "output_length"))


def _to_int(value: Any, what: str, where: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise WorkloadError(f"{where}: {what} is not a number: {value!r}") from None
    if not math.isfinite(number) or number != int(number) or number < 0:
        raise WorkloadError(f"{where}: {what} must be a whole number >= 0, got {value!r}")
    return int(number)


def _to_float(value: Any, what: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise WorkloadError(f"{where}: {what} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise WorkloadError(f"{where}: {what} must be finite, got {value!r}")
    return number


def _parse_datetime(value: str, where: str) -> float:
    try:
        stamp = datetime.fromisoformat(value.strip())
    except ValueError:
        raise WorkloadError(f"{where}: TIMESTAMP is not a date-time: {value!r}") from None
    if stamp.tzinfo is None:  # naive: read as UTC, never as local time (DST would bend offsets)
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _csv_rows(path: Path, limit: int | None) -> Iterator[_TraceRow]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        time_col = next(((c, unit) for c, unit in _CSV_TIME_COLUMNS if c in columns), None)
        len_cols = next((pair for pair in _CSV_LENGTH_COLUMNS if set(pair) <= set(columns)), None)
        if time_col is None or len_cols is None:
            raise WorkloadError(
                f"{path}: unrecognised CSV columns {columns}; need TIMESTAMP,ContextTokens,GeneratedTokens "
                f"(Azure) or timestamp[_s|_ms],input_length,output_length"
            )
        (tcol, unit), (icol, ocol) = time_col, len_cols
        for k, rec in enumerate(reader):
            if limit is not None and k >= limit:
                return
            where = f"{path}:{reader.line_num}"
            raw_t = rec.get(tcol)
            if raw_t is None or raw_t == "":
                raise WorkloadError(f"{where}: missing {tcol}")
            t = _parse_datetime(raw_t, where) if unit is None else _to_float(raw_t, tcol, where) * unit
            yield _TraceRow(t, _to_int(rec.get(icol), icol, where), _to_int(rec.get(ocol), ocol, where))


def _jsonl_rows(path: Path, limit: int | None) -> Iterator[_TraceRow]:
    count = 0
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if limit is not None and count >= limit:
                return
            where = f"{path}:{line_no}"
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise WorkloadError(f"{where}: not valid JSON: {exc}") from None
            if not isinstance(rec, dict):
                raise WorkloadError(f"{where}: expected a JSON object per line")
            missing = [k for k in ("timestamp", "input_length", "output_length") if k not in rec]
            if missing:
                raise WorkloadError(f"{where}: missing {', '.join(missing)} (Mooncake trace fields)")
            hash_ids = rec.get("hash_ids") or []
            if not isinstance(hash_ids, list) or not all(isinstance(h, int) for h in hash_ids):
                raise WorkloadError(f"{where}: hash_ids must be a list of integers")
            t = _to_float(rec["timestamp"], "timestamp", where) * 1e-3  # Mooncake timestamps are in ms
            n_in = _to_int(rec["input_length"], "input_length", where)
            n_out = _to_int(rec["output_length"], "output_length", where)
            count += 1
            yield _TraceRow(t, n_in, n_out, tuple(hash_ids))


def _block_prompt(
    tokenizer: TokenCounter,
    hash_ids: Sequence[int],
    n_tokens: int,
    seed: int,
    block_size: int,
    rng: np.random.Generator,
) -> str:
    """Prompt whose blocks are a function of (seed, hash id): equal hash ids give equal prefixes.

    With a tokenizer that can only count, a block is `block_size` words (at least as many tokens)."""
    if not isinstance(tokenizer, TokenizerLike):
        words: list[str] = []
        for h in hash_ids:
            if len(words) >= n_tokens:
                break
            words += _random_words(block_size, np.random.default_rng([seed, h]))
        return _counted_prompt(tokenizer, words[:n_tokens] or _random_words(n_tokens, rng), n_tokens, rng)
    ids: list[int] = []
    for h in hash_ids:
        if len(ids) >= n_tokens:
            break
        ids += _sample_ids(tokenizer, block_size, np.random.default_rng([seed, h]))
    ids = ids[:n_tokens]
    if len(ids) < n_tokens:
        ids += _sample_ids(tokenizer, n_tokens - len(ids), rng)
    return _fit_prompt(tokenizer, ids, n_tokens, rng)


def trace_workload(
    path: str | Path,
    tokenizer: TokenCounter,
    seed: int,
    time_scale: float = 1.0,
    limit: int | None = None,
    block_size: int = MOONCAKE_BLOCK_SIZE,
) -> list[RequestSpec]:
    """Requests replaying a trace; `arrival_s` = (timestamp - first timestamp) * `time_scale`.

    Formats, by extension and columns: `.csv` Azure LLM inference trace (TIMESTAMP date-time,
    ContextTokens, GeneratedTokens) or a generic CSV (timestamp / timestamp_s in s or timestamp_ms,
    input_length, output_length); `.jsonl` Mooncake (timestamp in ms, input_length, output_length,
    hash_ids). Only the first `limit` rows are read. Prompts are random at the trace's input length;
    Mooncake `hash_ids` (one per `block_size` tokens) become shared prompt blocks, so prefix reuse in
    the trace is kept. Rows are ordered by timestamp; rows with 0 input or output tokens are skipped with
    a warning. `time_scale` > 1 slows the replay down, < 1 speeds it up.
    """
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"trace file not found: {path}")
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise WorkloadError(f"time_scale must be a positive number, got {time_scale}")
    if limit is not None and limit < 1:
        raise WorkloadError(f"limit must be >= 1, got {limit}")
    if block_size < 1:
        raise WorkloadError(f"block_size must be >= 1, got {block_size}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = list(_csv_rows(path, limit))
    elif suffix == ".jsonl":
        rows = list(_jsonl_rows(path, limit))
    else:
        raise WorkloadError(
            f"{path}: unknown trace format {suffix!r}; use .csv (Azure/generic) or .jsonl (Mooncake)"
        )
    usable = [r for r in rows if r.input_len > 0 and r.output_len > 0]
    if len(usable) < len(rows):
        warnings.warn(
            f"{path}: skipped {len(rows) - len(usable)} rows with 0 input or output tokens", stacklevel=2
        )
    if not usable:
        raise WorkloadError(f"{path}: no trace rows with input and output tokens > 0")
    usable.sort(key=lambda r: r.timestamp_s)
    t0 = usable[0].timestamp_s
    rng = np.random.default_rng(seed)
    specs = []
    for i, row in enumerate(usable):
        if row.hash_ids:
            prompt = _block_prompt(tokenizer, row.hash_ids, row.input_len, seed, block_size, rng)
        else:
            prompt = random_prompt(tokenizer, row.input_len, rng)
        specs.append(
            RequestSpec(
                index=i,
                prompt=prompt,
                input_tokens=row.input_len,
                output_tokens=row.output_len,
                arrival_s=(row.timestamp_s - t0) * time_scale,
            )
        )
    return specs
