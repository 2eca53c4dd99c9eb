"""Parameter counts from a config (experiments.model_dir.param_counts) against the published totals."""

from __future__ import annotations

import pytest

from experiments.model_dir import param_counts, shape_config

# Published sizes (model cards / safetensors totals): total and, for the MoE, active parameters.
PUBLISHED = {
    "llama-3.1-8b": (8.03e9, 8.03e9),
    "qwen2.5-32b": (32.8e9, 32.8e9),
    "llama-3.1-70b-fp8": (70.6e9, 70.6e9),
    "qwen3-30b-a3b": (30.5e9, 3.3e9),
}


@pytest.mark.parametrize("shape", sorted(PUBLISHED))
def test_totals_match_the_published_sizes_within_2_percent(shape: str) -> None:
    counts = param_counts(shape_config(shape))
    total, active = PUBLISHED[shape]
    assert counts.total == pytest.approx(total, rel=0.02)
    assert counts.active == pytest.approx(active, rel=0.02)


def test_llama_8b_by_hand() -> None:
    # hidden 4096, 32 layers, 32 heads x 128, 8 KV heads, intermediate 14336, vocab 128256, untied.
    c = param_counts(shape_config("llama-3.1-8b"))
    assert c.embedding == c.lm_head == 128256 * 4096
    assert c.attention == 32 * (4096 * 4096 * 2 + 4096 * 1024 * 2)
    assert c.mlp == 32 * 3 * 4096 * 14336
    assert (c.experts, c.expert, c.moe_layers, c.routing) == (0, 0, 0, None)
    assert c.total == 8_029_995_008


def test_moe_experts_and_active_by_hand() -> None:
    # Qwen3-30B-A3B: 48 layers, 128 experts of 3 x 2048 x 768, 8 per token, router 2048 x 128.
    c = param_counts(shape_config("qwen3-30b-a3b"))
    expert = 3 * 2048 * 768
    assert (c.expert, c.moe_layers) == (expert, 48)
    assert c.experts == 48 * 128 * expert
    assert c.total - c.active == 48 * (128 - 8) * expert


def test_tied_embeddings_have_no_separate_head() -> None:
    config = {**shape_config("llama-3.1-8b"), "tie_word_embeddings": True}
    c = param_counts(config)
    assert c.lm_head == 0 and c.total == 8_029_995_008 - 128256 * 4096
