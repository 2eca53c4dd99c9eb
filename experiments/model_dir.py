"""Config-only model directories with a word-level tokenizer, tokenizer loading, and what a config
says about the KV cache and expert routing.

No weights can be downloaded, so tests and the demo serve a directory holding only `config.json` and a
tokenizer with vLLM's `--load-format dummy`. Token i is the word ``t<i>``: a prompt of N such words is
exactly N tokens. Any real Hugging Face model directory is accepted unchanged by `load_tokenizer`.
The tokenizer is also written alone into `tokenizer/` (no config.json beside it): what vLLM and the
proxy load (`serving_tokenizer`), because transformers 5 gives some model types (qwen2 among them) their
own tokenizer class, which reads the word-level vocabulary as BPE and encodes every prompt to no tokens.

Shapes (`SHAPES`, `--model NAME` in every launcher): tiny (CPU), llama-3.1-8b, qwen2.5-32b (dense bf16),
llama-3.1-70b-fp8 (dense, FP8 weights, bf16 KV) and qwen3-30b-a3b (MoE, 128 experts, 8 per token).
KV bytes per token (`shape_from_config`): 131,072 / 262,144 / 327,680 / 98,304 for the four big ones.
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
TOKENIZER_SUBDIR = "tokenizer"  # the word-level tokenizer alone, without the config (serving_tokenizer)

_LLAMA3_ROPE: dict[str, Any] = {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}
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

_QWEN_COMMON: dict[str, Any] = {
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.02,
    "tie_word_embeddings": False,
    "use_cache": True,
    "use_sliding_window": False,
    "rope_theta": 1000000.0,
    "torch_dtype": "bfloat16",
    "bos_token_id": 128000,  # the word-level tokenizer's specials (the vocabularies hold them)
    "eos_token_id": 128001,
}

# Every shape is a complete config.json over _LLAMA_COMMON; the published models' sizes, dummy weights.
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
        "rope_scaling": _LLAMA3_ROPE,
        "torch_dtype": "bfloat16",
    },
    # Qwen2.5-32B, as published: dense, bf16 (~65.5 GB of weights).
    "qwen2.5-32b": {
        **_QWEN_COMMON,
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 5120,
        "intermediate_size": 27648,
        "num_hidden_layers": 64,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "max_position_embeddings": 32768,
        "max_window_layers": 64,
        "sliding_window": 32768,
        "vocab_size": 152064,
    },
    # Llama-3.1-70B with an FP8 checkpoint config: vLLM creates the dummy weights in FP8 (~71 GB), dynamic
    # activation scales; the KV cache stays bf16 unless vLLM is given --kv-cache-dtype fp8.
    "llama-3.1-70b-fp8": {
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": _LLAMA3_ROPE,
        "torch_dtype": "bfloat16",
        "quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"},
    },
    # A Qwen3-MoE small enough for 2 CPU cores: the MoE path (vLLM's qwen3_moe, the planner's experts
    # term) end to end in tests.
    "tiny-moe": {
        **_QWEN_COMMON,
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "hidden_size": 128,
        "intermediate_size": 256,
        "moe_intermediate_size": 64,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "attention_bias": False,
        "max_position_embeddings": 4096,
        "max_window_layers": 2,
        "sliding_window": None,
    },
    # Qwen3-30B-A3B, as published: MoE, 128 experts of which 8 per token, ~30.5B total / ~3.3B active.
    "qwen3-30b-a3b": {
        **_QWEN_COMMON,
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "moe_intermediate_size": 768,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "num_hidden_layers": 48,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "attention_bias": False,
        "max_position_embeddings": 40960,
        "max_window_layers": 48,
        "sliding_window": None,
        "vocab_size": 151936,
    },
}
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4, "fp8": 1, "float8": 1}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a torch or vLLM dtype name ("bfloat16", "torch.float16", "fp8_e4m3"); 2 when
    unknown."""
    return next((b for name, b in DTYPE_BYTES.items() if dtype.replace("torch.", "").startswith(name)), 2)


@dataclass(frozen=True)
class ModelShape:
    """What sets the KV size of a token."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int
    source: str

    @property
    def bytes_per_token(self) -> int:
        """K and V of every layer: 2 x layers x KV heads x head dim x dtype bytes."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes


def shape_from_config(config: dict[str, Any], source: str, kv_cache_dtype: str | None = None) -> ModelShape:
    """The KV shape from a Hugging Face config.json (and vLLM's kv_cache_dtype when not "auto").

    The KV dtype is the model's torch_dtype: an FP8 checkpoint (quantization_config) keeps a bf16 KV
    cache unless vLLM runs with --kv-cache-dtype fp8."""
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    dtype = str(
        kv_cache_dtype if kv_cache_dtype not in (None, "auto") else config.get("torch_dtype", "bfloat16")
    )
    return ModelShape(
        layers=int(config["num_hidden_layers"]),
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        dtype_bytes=dtype_bytes(dtype),
        source=source,
    )


@dataclass(frozen=True)
class MoeRouting:
    """A mixture-of-experts layer's routing: each token goes to `per_token` of `experts` experts."""

    experts: int
    per_token: int


def moe_routing(config: dict[str, Any]) -> MoeRouting | None:
    """The routing of an MoE config (Qwen-MoE, Mixtral and DeepSeek key names); None for a dense model."""
    experts = config.get("num_experts") or config.get("num_local_experts") or config.get("n_routed_experts")
    per_token = config.get("num_experts_per_tok")
    if not experts or not per_token:
        return None
    return MoeRouting(int(experts), int(per_token))


@dataclass(frozen=True)
class ParamCounts:
    """A decoder-only transformer's parameters by where they sit (`param_counts`). Norms, biases and
    rotary tables are left out: under 0.1% of any shape here."""

    embedding: int  # the input token table: a step looks up its tokens' rows, it does not read it all
    lm_head: int  # the output projection; 0 when tied to the embedding (then the table is read as the head)
    attention: int  # q, k, v (grouped-query: KV heads) and o of every layer
    mlp: int  # gate, up and down of the dense layers, plus shared experts and routers of MoE layers
    experts: int  # every routed expert of every MoE layer
    expert: int  # one routed expert of one layer (gate, up, down)
    moe_layers: int
    routing: MoeRouting | None

    @property
    def total(self) -> int:
        return self.embedding + self.lm_head + self.attention + self.mlp + self.experts

    @property
    def active(self) -> int:
        """Parameters one token uses: the routed experts only as many as it is sent to."""
        per_token = self.routing.per_token if self.routing else 0
        return self.total - self.experts + self.expert * per_token * self.moe_layers

    @property
    def layer_linear(self) -> int:
        """The layers' matrix parameters (attention, MLP, experts): what an FP8 checkpoint stores in FP8."""
        return self.attention + self.mlp + self.experts


def param_counts(config: dict[str, Any]) -> ParamCounts:
    """Parameter counts from a Hugging Face config.json (Llama, Qwen2, Qwen3-MoE, Mixtral key names):
    embedding vocab x hidden; attention hidden x head_dim x (2 x heads + 2 x KV heads); a dense MLP 3 x
    hidden x intermediate; an MoE layer its experts (3 x hidden x moe_intermediate each), its router
    (hidden x experts) and any shared expert; lm_head vocab x hidden unless tied."""
    hidden, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    vocab = int(config["vocab_size"])
    routing = moe_routing(config)
    dense_layers = layers
    expert = experts = router = 0
    if routing:
        step = int(config.get("decoder_sparse_step") or 1)
        dense_only = set(config.get("mlp_only_layers") or ())
        moe_layers = sum(1 for i in range(layers) if i not in dense_only and (i + 1) % step == 0)
        dense_layers = layers - moe_layers
        expert = 3 * hidden * int(config.get("moe_intermediate_size") or config["intermediate_size"])
        shared = 3 * hidden * int(config.get("shared_expert_intermediate_size") or 0)
        experts = moe_layers * routing.experts * expert
        router = moe_layers * (hidden * routing.experts + shared)
    embedding = vocab * hidden
    return ParamCounts(
        embedding=embedding,
        lm_head=0 if config.get("tie_word_embeddings") else embedding,
        attention=layers * hidden * head_dim * 2 * (heads + kv_heads),
        mlp=dense_layers * 3 * hidden * int(config["intermediate_size"]) + router,
        experts=experts,
        expert=expert,
        moe_layers=layers - dense_layers,
        routing=routing,
    )


def shape_config(shape: str) -> dict[str, Any]:
    """The complete config.json of a named shape."""
    if shape not in SHAPES:
        raise ValueError(f"unknown model shape {shape!r}; choose one of {', '.join(SHAPES)}")
    return {**_LLAMA_COMMON, **SHAPES[shape]}


def read_config(model: str | Path) -> dict[str, Any] | None:
    """config.json of a model: a shape name's, a local directory's, else None (a hub id, unread)."""
    if str(model) in SHAPES:
        return shape_config(str(model))
    path = Path(model) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


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
    """Write a config-only model of `shape` (a key of SHAPES) to `path`; return the path.

    Idempotent: an existing directory with the same config is left as it is.
    """
    config = shape_config(shape)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    config_bytes = json.dumps(config, indent=2, sort_keys=True).encode()
    cfg_path = out / "config.json"
    alone = out / TOKENIZER_SUBDIR
    complete = cfg_path.exists() and (alone / "tokenizer_config.json").exists()
    if complete and cfg_path.read_bytes() == config_bytes:
        return out
    vocab_size = config["vocab_size"]
    tokenizer_json = orjson.dumps(_tokenizer_json(vocab_size))
    tokenizer_config = json.dumps(
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
    alone.mkdir(exist_ok=True)
    for where in (out, alone):
        (where / "tokenizer.json").write_bytes(tokenizer_json)
        (where / "tokenizer_config.json").write_text(tokenizer_config)
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]})
    )
    (out / "testbed_model.json").write_text(json.dumps({"shape": shape, "weights": "none (serve dummy)"}))
    cfg_path.write_bytes(config_bytes)  # last: its presence marks a complete directory
    return out


def serving_tokenizer(model: str | Path) -> str:
    """What vLLM's and the proxy's `--tokenizer` is: a config-only model's tokenizer on its own (its
    `tokenizer/`, away from the config's model_type), else the model itself (a real model, unchanged)."""
    alone = Path(model) / TOKENIZER_SUBDIR
    if model_shape(model) is not None and (alone / "tokenizer_config.json").exists():
        return str(alone)
    return str(model)


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
    """A shape name (a key of SHAPES, e.g. "qwen3-30b-a3b") becomes a written config-only model; a path
    stays as is."""
    if name_or_path in SHAPES:
        return str(write_model_dir(Path(models_root) / name_or_path, name_or_path).resolve())
    return name_or_path
