"""The config-only shapes: each a config vLLM and transformers read as the published model, with the KV
bytes per token worked out by hand from the published sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.model_dir import (
    SHAPES,
    MoeRouting,
    model_shape,
    moe_routing,
    read_config,
    resolve_model,
    serving_tokenizer,
    shape_from_config,
    write_model_dir,
)
from launch.server import ServerSpec

# 2 (K and V) x layers x KV heads x head dim x 2 bytes (bf16), from each model card's config.json.
KV_BYTES = {
    "llama-3.1-8b": 2 * 32 * 8 * 128 * 2,  # 131,072
    "qwen2.5-32b": 2 * 64 * 8 * 128 * 2,  # 262,144
    "llama-3.1-70b-fp8": 2 * 80 * 8 * 128 * 2,  # 327,680: FP8 weights, bf16 KV
    "qwen3-30b-a3b": 2 * 48 * 4 * 128 * 2,  # 98,304
}


@pytest.mark.parametrize("shape", sorted(KV_BYTES))
def test_each_shape_has_its_published_kv_bytes_per_token(shape: str, tmp_path: Path) -> None:
    path = Path(resolve_model(shape, tmp_path))
    assert model_shape(path) == shape
    config = read_config(path)
    assert config is not None and config == read_config(shape)
    assert shape_from_config(config, shape).bytes_per_token == KV_BYTES[shape]


def test_fp8_checkpoint_keeps_a_bf16_kv_cache_unless_told(tmp_path: Path) -> None:
    config = json.loads((write_model_dir(tmp_path / "m", "llama-3.1-70b-fp8") / "config.json").read_text())
    assert config["quantization_config"] == {"quant_method": "fp8", "activation_scheme": "dynamic"}
    assert shape_from_config(config, "x").dtype_bytes == 2
    assert shape_from_config(config, "x", kv_cache_dtype="fp8").bytes_per_token == 2 * 80 * 8 * 128


def test_only_the_moe_shapes_route_to_experts() -> None:
    routes = {name: moe_routing(read_config(name) or {}) for name in SHAPES}
    assert routes.pop("qwen3-30b-a3b") == MoeRouting(experts=128, per_token=8)
    assert routes.pop("tiny-moe") == MoeRouting(experts=8, per_token=2)
    assert set(routes.values()) == {None}
    assert moe_routing({"num_local_experts": 8, "num_experts_per_tok": 2}) == MoeRouting(8, 2)  # Mixtral


def test_transformers_and_vllm_read_every_shape_as_its_model_class(tmp_path: Path) -> None:
    from transformers import AutoConfig
    from vllm.model_executor.models import ModelRegistry

    archs = set(ModelRegistry.get_supported_archs())
    want = {
        "llama-3.1-8b": ("LlamaConfig", 32),
        "qwen2.5-32b": ("Qwen2Config", 64),
        "llama-3.1-70b-fp8": ("LlamaConfig", 80),
        "qwen3-30b-a3b": ("Qwen3MoeConfig", 48),
    }
    for shape, (cls, layers) in want.items():
        config = AutoConfig.from_pretrained(str(write_model_dir(tmp_path / shape, shape)))
        assert (type(config).__name__, config.num_hidden_layers) == (cls, layers)
        assert set(config.architectures) <= archs
    moe = AutoConfig.from_pretrained(str(tmp_path / "qwen3-30b-a3b"))
    assert (moe.num_experts, moe.num_experts_per_tok, moe.moe_intermediate_size) == (128, 8, 768)


@pytest.mark.parametrize("shape", sorted(KV_BYTES))
def test_vllm_and_the_proxy_encode_each_shapes_words_as_their_ids(shape: str, tmp_path: Path) -> None:
    """N words are N tokens where it counts: vLLM's tokenizer loader and the proxy's AutoTokenizer, on the
    tokenizer the launchers pass (transformers 5 read the 32B's, next to its qwen2 config, as BPE: no ids)."""
    from transformers import AutoTokenizer
    from vllm.tokenizers import get_tokenizer

    model = write_model_dir(tmp_path / shape, shape)
    tok = serving_tokenizer(model)
    assert tok == str(model / "tokenizer") and not (model / "tokenizer" / "config.json").exists()
    for loaded in (get_tokenizer(tok), AutoTokenizer.from_pretrained(tok)):
        assert loaded.encode("t5 t6 t70000", add_special_tokens=False) == [5, 6, 70000]
    assert ServerSpec(port=1, model=str(model)).command()[-2:] == ["--tokenizer", tok]
    assert "--tokenizer" not in ServerSpec(port=1, model=str(tmp_path)).command()  # a real model: as given


def test_the_8b_config_is_unchanged() -> None:
    """Written model directories are reused only when their config is byte-identical: the 8B shape the
    measured runs used must stay as it was."""
    c = read_config("llama-3.1-8b")
    assert c is not None
    assert (c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["rope_scaling"]["factor"]) == (
        4096,
        14336,
        128256,
        8.0,
    )
    assert "quantization_config" not in c and c["architectures"] == ["LlamaForCausalLM"]


def test_an_unknown_shape_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="qwen3-30b-a3b"):
        write_model_dir(tmp_path / "m", "gpt-5")
