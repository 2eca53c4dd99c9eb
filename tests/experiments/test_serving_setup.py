"""The serving setup recorded in results: from launch plans, logs and the server itself."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import serving_setup as ss

LOG = """INFO non-default args: {'model': '/m', 'max_model_len': 4096, 'gpu_memory_utilization': 0.65}
INFO Chunked prefill is enabled with max_num_batched_tokens=8192.
INFO Initializing a V1 LLM engine (v0.23.0) with config: model='/m', dtype=torch.bfloat16, max_seq_len=4096,
 enforce_eager=False, kv_cache_dtype=auto, enable_prefix_caching=True, enable_chunked_prefill=True
INFO GPU KV cache size: 1,234,560 tokens, Maximum concurrency for 4,096 tokens per request: 301.41x
"""


def _spec(name: str, port: int, gpu: str, kv: dict | None = None) -> dict:
    cmd = [
        "python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/m",
        "--port",
        str(port),
        "--gpu-memory-utilization",
        "0.65",
        "--enforce-eager",
    ]
    if kv:
        cmd += ["--kv-transfer-config", json.dumps(kv)]
    return {"name": name, "url": f"http://127.0.0.1:{port}", "gpu": gpu, "command": cmd}


def _pd_plan(tmp_path: Path) -> Path:
    kv = {"kv_connector": "P2pNcclConnector", "kv_connector_extra_config": {"send_type": "GET"}}
    plan = {
        "prefill": [_spec("prefill0", 1, "0", kv)],
        "decode": [_spec("decode0", 2, "1", kv)],
        "proxy": ["python", "-m", "proxy", "--connector", "p2p_nccl", "--select", "round_robin"],
        "connector": "p2p_nccl",
        "connector_options": {"send_type": "GET", "nccl_num_channels": "16"},
        "endpoint": "http://127.0.0.1:3",
        "vllm_version": "0.23.0",
    }
    (tmp_path / "prefill0.log").write_text(LOG)
    path = tmp_path / "launch.json"
    path.write_text(json.dumps(plan))
    return path


def test_engine_log_gives_effective_settings() -> None:
    eng = ss.parse_engine_log(LOG)
    assert eng["vllm_version"] == "0.23.0"
    assert eng["max_num_batched_tokens"] == 8192
    assert eng["kv_cache_tokens"] == 1234560
    assert eng["enable_prefix_caching"] is True and eng["enforce_eager"] is False
    assert eng["non_default_args"]["gpu_memory_utilization"] == 0.65


def test_serve_args_parse_flags_and_booleans() -> None:
    args = ss.parse_serve_args(["x", "--max-num-seqs", "64", "--enforce-eager", "--block-size=32"])
    assert args == {"max_num_seqs": "64", "enforce_eager": True, "block_size": "32"}


def test_pd_plan_is_xpyd_with_connector_and_gpus(tmp_path: Path) -> None:
    path = _pd_plan(tmp_path)
    setup = ss.from_plan(json.loads(path.read_text()), path, "http://127.0.0.1:3")
    assert setup is not None
    assert (setup.kind, setup.label, setup.num_gpus, setup.gpus) == (
        "xpyd",
        "1P1D p2p_nccl GET",
        2,
        ["0", "1"],
    )
    assert setup.connector_options == {"send_type": "GET", "nccl_num_channels": "16"}
    (prefill,) = setup.role("prefill")
    assert prefill.settings.max_num_batched_tokens == 8192  # from the engine log
    assert prefill.settings.gpu_memory_utilization == 0.65  # from the serve command, as a number
    assert prefill.kv_transfer_config is not None
    assert prefill.kv_transfer_config["kv_connector"] == "P2pNcclConnector"
    assert setup.role("decode")[0].engine_log == {}  # decode0.log absent: nothing invented


def test_one_instance_of_a_plan_driven_directly_is_a_single_setup(tmp_path: Path) -> None:
    path = _pd_plan(tmp_path)
    plan = json.loads(path.read_text())
    plan.update(connector="passthrough", connector_options=None)
    setup = ss.from_plan(plan, path, "http://127.0.0.1:1")
    assert setup is not None
    assert (setup.kind, setup.num_gpus, setup.idle_instances) == ("single", 1, ["decode0"])
    assert [i.role for i in setup.instances] == ["serving"]
    assert ss.from_plan(plan, path, "http://127.0.0.1:9") is None


def test_passthrough_plan_is_replicas(tmp_path: Path) -> None:
    path = _pd_plan(tmp_path)
    plan = json.loads(path.read_text())
    plan.update(connector="passthrough")
    setup = ss.from_plan(plan, path, "http://127.0.0.1:3")
    assert setup is not None and (setup.kind, setup.label, setup.select) == (
        "replicas",
        "2 replicas",
        "round_robin",
    )


def test_describe_finds_an_explicit_plan_and_falls_back_to_the_server(tmp_path: Path) -> None:
    path = _pd_plan(tmp_path)
    found = ss.describe("http://127.0.0.1:3", tmp_path)
    assert found.kind == "xpyd" and found.source == f"launch plan {path}"
    bare = ss.describe("http://127.0.0.1:9")  # nothing listens: a single server, said so
    assert bare.kind == "single" and bare.source is not None and "no launch plan" in bare.source
    assert bare.name == "1 instance"


def test_an_odd_flag_value_is_left_out_not_fatal(tmp_path: Path) -> None:
    path = _pd_plan(tmp_path)
    plan = json.loads(path.read_text())
    plan["prefill"][0]["command"] += ["--max-num-seqs", "lots"]
    setup = ss.from_plan(plan, path, "http://127.0.0.1:3")
    assert setup is not None
    prefill = setup.role("prefill")[0]
    assert prefill.settings.max_num_seqs is None and prefill.serve_args["max_num_seqs"] == "lots"
