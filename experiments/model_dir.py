"""Config-only Llama model directories with a word-level tokenizer, and tokenizer loading.

No weights can be downloaded, so tests and the demo serve a directory holding only `config.json` and a
tokenizer with vLLM's `--load-format dummy`. Token i is the word ``t<i>``: a prompt of N such words is
exactly N tokens. Any real Hugging Face model directory is accepted unchanged by `load_tokenizer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
UNK = "<unk>"

_LLAMA_COMMON: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "initializer_range": 0.02,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "use_cache": True,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "vocab_size": 128256,
}

SHAPES: dict[str, dict[str, Any]] = {
    # Small enough to serve on 2 CPU cores in ~1 GB.
    "tiny": {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "max_position_embeddings": 4096,
        "rope_theta": 500000.0,
        "torch_dtype": "bfloat16",
    },
    # Llama-3.1-8B, as published.
    "llama-3.1-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "torch_dtype": "bfloat16",
    },
}

# Joins message contents with spaces so that N words in still count as N tokens.
_CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% if not loop.last %} {% endif %}{% endfor %}"


def word(i: int) -> str:
    """The word that token id `i` stands for in the word-level tokenizer."""
    return f"t{i}"


def _special_tokens(vocab_size: int) -> dict[str, int]:
    bos, eos = _LLAMA_COMMON["bos_token_id"], _LLAMA_COMMON["eos_token_id"]
    return {BOS: bos, EOS: eos, UNK: min(eos + 1, vocab_size - 1)}


def _tokenizer_json(vocab_size: int) -> dict[str, Any]:
    specials = _special_tokens(vocab_size)
    special_ids = set(specials.values())
    vocab = {word(i): i for i in range(vocab_size) if i not in special_ids}
    vocab.update(specials)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": tok,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for tok, i in sorted(specials.items(), key=lambda kv: kv[1])
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK},
    }


def write_model_dir(path: str | Path, shape: str = "tiny") -> Path:
    """Write a config-only Llama of `shape` ("tiny" or "llama-3.1-8b") to `path`; return the path.

    Idempotent: an existing directory with the same config is left as it is.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown model shape {shape!r}; choose one of {', '.join(SHAPES)}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    config = {**_LLAMA_COMMON, **SHAPES[shape]}
    config_bytes = json.dumps(config, indent=2, sort_keys=True).encode()
    cfg_path = out / "config.json"
    if cfg_path.exists() and cfg_path.read_bytes() == config_bytes and (out / "tokenizer.json").exists():
        return out
    vocab_size = config["vocab_size"]
    (out / "tokenizer.json").write_bytes(orjson.dumps(_tokenizer_json(vocab_size)))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": BOS,
                "eos_token": EOS,
                "unk_token": UNK,
                "add_bos_token": False,
                "add_eos_token": False,
                "clean_up_tokenization_spaces": False,
                "model_max_length": config["max_position_embeddings"],
                "chat_template": _CHAT_TEMPLATE,
            },
            indent=2,
        )
    )
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]})
    )
    (out / "testbed_model.json").write_text(json.dumps({"shape": shape, "weights": "none (serve dummy)"}))
    cfg_path.write_bytes(config_bytes)  # last: its presence marks a complete directory
    return out


def model_shape(path: str | Path) -> str | None:
    """The shape name if `path` was written by `write_model_dir`, else None (a real model)."""
    marker = Path(path) / "testbed_model.json"
    if not marker.exists():
        return None
    return str(json.loads(marker.read_text())["shape"])


@dataclass
class Tokenizer:
    """Thin wrapper giving workloads one interface over any Hugging Face tokenizer."""

    name: str
    vocab_size: int
    special_ids: set[int] = field(default_factory=set)
    _impl: Any = None

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens (BOS is not added)."""
        enc = self._impl.encode(text, add_special_tokens=False)
        return list(enc.ids) if hasattr(enc, "ids") else list(enc)

    def decode(self, ids: list[int]) -> str:
        return str(self._impl.decode(ids, skip_special_tokens=False))


def load_tokenizer(model: str | Path) -> Tokenizer:
    """Load the tokenizer of a model directory (ours or any real HF model)."""
    path = Path(model)
    tok_file = path / "tokenizer.json"
    if tok_file.exists():
        from tokenizers import Tokenizer as HFTokenizer

        impl = HFTokenizer.from_file(str(tok_file))
        specials = {t.id for t in _added_tokens(tok_file) if t.special}
        return Tokenizer(str(path), impl.get_vocab_size(with_added_tokens=True), specials, impl)
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers ships with vLLM
        raise RuntimeError(f"cannot load tokenizer of {model}: transformers is not installed") from exc
    try:
        impl = AutoTokenizer.from_pretrained(str(model))
    except Exception as exc:
        raise RuntimeError(f"cannot load tokenizer of {model}: {exc}") from exc
    return Tokenizer(str(model), len(impl), set(impl.all_special_ids), impl)


@dataclass
class _Added:
    id: int
    special: bool


def _added_tokens(tok_file: Path) -> list[_Added]:
    data = orjson.loads(tok_file.read_bytes())
    return [_Added(int(t["id"]), bool(t.get("special", False))) for t in data.get("added_tokens", [])]


def word_prompt(ids: list[int]) -> str:
    """Text of the word-level tokenizer that encodes to exactly `ids`."""
    return " ".join(word(i) for i in ids)


def resolve_model(name_or_path: str, models_root: str | Path = "results/models") -> str:
    """A shape name ("tiny", "llama-3.1-8b") becomes a written config-only model; a path stays as is."""
    if name_or_path in SHAPES:
        return str(write_model_dir(Path(models_root) / name_or_path, name_or_path).resolve())
    return name_or_path
