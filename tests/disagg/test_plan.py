"""The launcher's plan (no processes started) and the KV-transfer configs per connector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disagg.__main__ import build_parser, plan
from disagg.kv_config import P2pNcclOptions, auto_connector, kv_transfer_config


def _plan(tmp_path: Path, *argv: str):
    return plan(build_parser().parse_args(["--cpu", "--run-dir", str(tmp_path), *argv]), [])


def test_cpu_default_is_example_connector_with_shared_storage(tmp_path: Path) -> None:
    p, d, proxy, run_dir = _plan(tmp_path)
    assert [s.name for s in p + d] == ["prefill0", "decode0"]
    assert p[0].kv_transfer_config["kv_role"] == "kv_producer"
    assert d[0].kv_transfer_config["kv_role"] == "kv_consumer"
    path = p[0].kv_transfer_config["kv_connector_extra_config"]["shared_storage_path"]
    assert path == d[0].kv_transfer_config["kv_connector_extra_config"]["shared_storage_path"]
    assert path == str(run_dir / "kv")
    assert proxy[proxy.index("--connector") + 1] == "example"
    assert proxy[proxy.index("--prefill") + 1] == "http://127.0.0.1:8100"
    assert all(s.environment()["VLLM_DISABLE_REQUEST_ID_RANDOMIZATION"] == "1" for s in p + d)
    cmd = p[0].command()
    assert json.loads(cmd[cmd.index("--kv-transfer-config") + 1]) == p[0].kv_transfer_config


def test_xpyd_p2p_ports_and_static_list(tmp_path: Path) -> None:
    p, d, proxy, _ = _plan(
        tmp_path,
        "--connector",
        "p2p_nccl",
        "--num-prefill",
        "2",
        "--num-decode",
        "3",
        "--send-type",
        "GET",
        "--nccl-num-channels",
        "8",
    )
    assert [s.port for s in p] == [8100, 8101] and [s.port for s in d] == [8200, 8201, 8202]
    assert [s.kv_transfer_config["kv_port"] for s in p + d] == ["21001", "21002", "22001", "22002", "22003"]
    assert {s.kv_transfer_config["kv_connector_extra_config"]["send_type"] for s in p + d} == {"GET"}
    assert proxy[proxy.index("--decode") + 1].split(",")[2] == "http://127.0.0.1:8202@127.0.0.1:22003"


def test_get_default_leaves_room_for_the_kv_buffers(tmp_path: Path) -> None:
    p, d, _, _ = _plan(tmp_path, "--connector", "p2p_nccl")
    assert p[0].kv_transfer_config["kv_buffer_size"] == "3e10"
    assert (p[0].gpu_memory_utilization, d[0].gpu_memory_utilization) == (0.65, 0.8)
    p, d, _, _ = _plan(tmp_path, "--connector", "p2p_nccl", "--send-type", "PUT_ASYNC")
    assert p[0].kv_transfer_config["kv_buffer_size"] == "1e1" and p[0].gpu_memory_utilization == 0.9


def test_discovery_replaces_the_static_list(tmp_path: Path) -> None:
    p, _, proxy, _ = _plan(tmp_path, "--connector", "p2p_nccl", "--discovery-port", "30001")
    extra = p[0].kv_transfer_config["kv_connector_extra_config"]
    assert (extra["proxy_port"], extra["http_port"]) == ("30001", "8100")
    assert "--prefill" not in proxy and proxy[proxy.index("--discovery-port") + 1] == "30001"


def test_passthrough_baseline_has_no_kv_connector(tmp_path: Path) -> None:
    p, d, proxy, _ = _plan(tmp_path, "--passthrough")
    assert all(s.kv_transfer_config is None for s in p + d)
    assert "--kv-transfer-config" not in p[0].command()
    assert proxy[proxy.index("--backend") + 1] == "http://127.0.0.1:8100,http://127.0.0.1:8200"


def test_auto_connector_by_version() -> None:
    assert auto_connector("0.23.0", gpu=True) == "p2p_nccl"
    assert auto_connector("0.24.1", gpu=True) == "nixl"
    assert auto_connector("0.32.0", gpu=False) == "example"
    with pytest.raises(ValueError, match="not installed"):
        auto_connector(None, gpu=True)


def test_p2p_config_matches_the_recipe() -> None:
    cfg = kv_transfer_config("p2p_nccl", "decode", kv_port=22001, p2p=P2pNcclOptions())
    assert cfg == {
        "kv_connector": "P2pNcclConnector",
        "kv_role": "kv_consumer",
        "kv_buffer_size": "8e9",
        "kv_port": "22001",
        "kv_connector_extra_config": {
            "send_type": "GET",
            "nccl_num_channels": "16",
            "mem_pool_size_gb": "8",
        },
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"connector": "p2p_nccl", "role": "prefill"}, "kv_port"),
        ({"connector": "example", "role": "decode"}, "shared storage"),
        ({"connector": "lmcache", "role": "decode"}, "unknown connector"),
        ({"connector": "nixl", "role": "both"}, "role must be"),
    ],
)
def test_bad_configs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kv_transfer_config(**kwargs)


def test_bad_send_type_is_refused() -> None:
    with pytest.raises(ValueError, match="send_type"):
        P2pNcclOptions(send_type="PUSH")
