"""The launcher's plan (no processes started) and the KV-transfer configs per connector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disagg.cli import build_parser
from disagg.kv_config import NixlOptions, P2pNcclOptions, auto_connector, kv_transfer_config
from disagg.plan import DisaggPlan, plan
from experiments.serving_setup import from_plan
from launch.cli import write_plan
from tests.conftest import free_port


def _plan(tmp_path: Path, *argv: str) -> DisaggPlan:
    return plan(build_parser().parse_args(["--cpu", "--run-dir", str(tmp_path), *argv]), [])


def _parts(tmp_path: Path, *argv: str):
    run = _plan(tmp_path, *argv)
    return run.prefill, run.decode, run.proxy, run.run_dir


def test_cpu_default_is_example_connector_with_shared_storage(tmp_path: Path) -> None:
    p, d, proxy, run_dir = _parts(tmp_path)
    assert [s.name for s in p + d] == ["prefill0", "decode0"]
    assert p[0].kv_transfer_config["kv_role"] == "kv_producer"
    assert d[0].kv_transfer_config["kv_role"] == "kv_consumer"
    path = p[0].kv_transfer_config["kv_connector_extra_config"]["shared_storage_path"]
    assert path == d[0].kv_transfer_config["kv_connector_extra_config"]["shared_storage_path"]
    assert path == str(run_dir / "kv")
    assert proxy[proxy.index("--connector") + 1] == "example"
    assert proxy[proxy.index("--prefill") + 1] == "http://127.0.0.1:8100"
    # KV is keyed by the prompt's tokens: no request-id pinning.
    assert all("VLLM_DISABLE_REQUEST_ID_RANDOMIZATION" not in s.environment() for s in p + d)
    cmd = p[0].command()
    assert json.loads(cmd[cmd.index("--kv-transfer-config") + 1]) == p[0].kv_transfer_config


def test_xpyd_p2p_ports_and_static_list(tmp_path: Path) -> None:
    p, d, proxy, _ = _parts(
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
    # P2P NCCL keys KV by request id: both sides must keep the id the proxy sent.
    assert all(s.environment()["VLLM_DISABLE_REQUEST_ID_RANDOMIZATION"] == "1" for s in p + d)


def test_get_default_leaves_room_for_the_kv_buffers(tmp_path: Path) -> None:
    p, d, _, _ = _parts(tmp_path, "--connector", "p2p_nccl")
    assert p[0].kv_transfer_config["kv_buffer_size"] == "3e10"
    assert (p[0].gpu_memory_utilization, d[0].gpu_memory_utilization) == (0.65, 0.8)
    p, d, _, _ = _parts(tmp_path, "--connector", "p2p_nccl", "--send-type", "PUT_ASYNC")
    assert p[0].kv_transfer_config["kv_buffer_size"] == "1e1" and p[0].gpu_memory_utilization == 0.9


def test_discovery_replaces_the_static_list(tmp_path: Path) -> None:
    p, _, proxy, _ = _parts(tmp_path, "--connector", "p2p_nccl", "--discovery-port", "30001")
    extra = p[0].kv_transfer_config["kv_connector_extra_config"]
    assert (extra["proxy_port"], extra["http_port"]) == ("30001", "8100")
    assert "--prefill" not in proxy and proxy[proxy.index("--discovery-port") + 1] == "30001"


def test_passthrough_baseline_has_no_kv_connector(tmp_path: Path) -> None:
    p, d, proxy, _ = _parts(tmp_path, "--passthrough")
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


def test_nixl_follows_the_h200_recipe(tmp_path: Path) -> None:
    run = _plan(tmp_path, "--connector", "nixl", "--num-prefill", "2", "--num-decode", "2")
    p, d = run.prefill, run.decode
    assert [s.kv_transfer_config["kv_role"] for s in p + d] == ["kv_producer"] * 2 + ["kv_consumer"] * 2
    assert p[0].kv_transfer_config == {
        "kv_connector": "NixlConnector",
        "kv_role": "kv_producer",
        "kv_buffer_device": "cuda",
        "kv_connector_extra_config": {"backends": ["UCX"]},
    }
    envs = [s.environment() for s in p + d]
    assert [e["VLLM_NIXL_SIDE_CHANNEL_PORT"] for e in envs] == ["5600", "5601", "5700", "5701"]
    assert {e["VLLM_NIXL_SIDE_CHANNEL_HOST"] for e in envs} == {"127.0.0.1"}
    # No request-id pinning: P's answer names its request in kv_transfer_params.
    assert not any("VLLM_DISABLE_REQUEST_ID_RANDOMIZATION" in e or "UCX_TLS" in e for e in envs)
    assert "--block-size" not in p[0].command()
    assert run.proxy[run.proxy.index("--connector") + 1] == "nixl"
    assert run.proxy[run.proxy.index("--decode") + 1] == "http://127.0.0.1:8200,http://127.0.0.1:8201"
    assert run.connector_options == {
        "kv_buffer_device": "cuda",
        "backends": ["UCX"],
        "side_channel_host": "127.0.0.1",
        "side_channel_port": 5600,
        "ucx_tls": None,
        "mode": "pull",
        "kv_connector": "NixlConnector",
    }
    # The plan records each instance's side-channel port with its environment.
    assert run.launch_json()["decode"][1]["env"]["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5701"


def test_nixl_options_and_block_size_are_flags(tmp_path: Path) -> None:
    run = _plan(
        tmp_path,
        "--connector",
        "nixl",
        "--nixl-side-channel-port",
        "6000",
        "--nixl-buffer-device",
        "cpu",
        "--nixl-backends",
        "UCX,GDS",
        "--ucx-tls",
        "cuda_ipc,cuda_copy,tcp",
        "--kv-block-size",
        "64",
    )
    for s, port in ((run.prefill[0], "6000"), (run.decode[0], "6100")):
        assert s.kv_transfer_config["kv_buffer_device"] == "cpu"
        assert s.kv_transfer_config["kv_connector_extra_config"] == {"backends": ["UCX", "GDS"]}
        env = s.environment()
        assert (env["VLLM_NIXL_SIDE_CHANNEL_PORT"], env["UCX_TLS"]) == (port, "cuda_ipc,cuda_copy,tcp")
        cmd = s.command()
        assert cmd[cmd.index("--block-size") + 1] == "64"
    assert run.connector_options["kv_buffer_device"] == "cpu"
    assert run.connector_options["ucx_tls"] == "cuda_ipc,cuda_copy,tcp"


def test_nixl_flags_are_refused_with_another_connector(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--nixl-buffer-device, --ucx-tls apply to --connector nixl only"):
        _plan(tmp_path, "--connector", "p2p_nccl", "--nixl-buffer-device", "cpu", "--ucx-tls", "tcp")


def test_block_size_reaches_every_instance_of_the_baseline_too(tmp_path: Path) -> None:
    p, d, _, _ = _parts(tmp_path, "--passthrough", "--kv-block-size", "32")
    assert all(s.command()[s.command().index("--block-size") + 1] == "32" for s in p + d)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--num-prefill", "2", "--decode-port", "8101"), r"8101: prefill1 HTTP, decode0 HTTP"),
        (("--connector", "nixl", "--nixl-side-channel-port", "8100"), r"8100: prefill0 HTTP, prefill0 NIXL"),
        (("--connector", "p2p_nccl", "--prefill-kv-port", "8000"), r"8000: proxy, prefill0 P2P NCCL"),
    ],
)
def test_a_port_used_twice_is_refused(tmp_path: Path, argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _plan(tmp_path, *argv)


def test_serving_setup_reads_the_nixl_plan(tmp_path: Path) -> None:
    """The contract with experiments/serving_setup.py: launch.json names connector, options, version."""
    ports = [str(free_port()) for _ in range(3)]
    run = _plan(
        tmp_path,
        "--connector",
        "nixl",
        "--kv-block-size",
        "128",
        "--proxy-port",
        ports[0],
        "--prefill-port",
        ports[1],
        "--decode-port",
        ports[2],
    )
    version = write_plan(run.run_dir, run.launch_json())
    path = run.run_dir / "launch.json"
    written = json.loads(path.read_text())
    assert written["vllm_version"] == version and written["connector"] == "nixl"
    setup = from_plan(written, path, run.endpoint)
    assert setup is not None and setup.connector_options is not None
    assert (setup.kind, setup.label, setup.connector) == ("xpyd", "1P1D nixl", "nixl")
    assert setup.connector_options["backends"] == ["UCX"]
    assert [i.settings.block_size for i in setup.instances] == [128, 128]
    assert [(i.kv_transfer_config or {}).get("kv_role") for i in setup.instances] == [
        "kv_producer",
        "kv_consumer",
    ]


def test_nixl_push_mode_names_the_write_connector(tmp_path: Path) -> None:
    run = _plan(tmp_path, "--connector", "nixl", "--nixl-mode", "push")
    assert [s.kv_transfer_config["kv_connector"] for s in (*run.prefill, *run.decode)] == [
        "NixlPushConnector"
    ] * 2
    assert (run.connector_options["mode"], run.connector_options["kv_connector"]) == (
        "push",
        "NixlPushConnector",
    )
    setup = from_plan(run.launch_json(), run.run_dir / "launch.json", run.endpoint)
    assert setup is not None and setup.label == "1P1D nixl push"
    pull = _plan(tmp_path / "pull", "--connector", "nixl")
    assert pull.prefill[0].kv_transfer_config["kv_connector"] == "NixlConnector"
    with pytest.raises(ValueError, match=r"--nixl-mode apply to --connector nixl only"):
        _plan(tmp_path / "p2p", "--connector", "p2p_nccl", "--nixl-mode", "push")
    with pytest.raises(ValueError, match="NIXL mode must be one of pull, push"):
        NixlOptions(mode="write")


def test_ucx_transports_without_a_host_transport_are_refused(tmp_path: Path) -> None:
    """Measured on 2 x H200: cuda_ipc,cuda_copy alone fails at engine start; with tcp it runs."""
    with pytest.raises(ValueError, match=r"no host transport .* e\.g\. cuda_ipc,cuda_copy,tcp"):
        _plan(tmp_path, "--connector", "nixl", "--ucx-tls", "cuda_ipc,cuda_copy")
    assert NixlOptions(ucx_tls="cuda_ipc,cuda_copy,tcp").ucx_tls == "cuda_ipc,cuda_copy,tcp"
    assert NixlOptions(ucx_tls="^cuda_ipc").ucx_tls == "^cuda_ipc"  # an exclusion list keeps the rest


def test_nixl_config_and_options_are_checked() -> None:
    assert (
        kv_transfer_config("nixl", "decode", nixl=NixlOptions(backends=("UCX",)))["kv_role"] == "kv_consumer"
    )
    with pytest.raises(ValueError, match="kv_buffer_device must be one of cuda, cpu"):
        NixlOptions(buffer_device="gpu")
    with pytest.raises(ValueError, match="at least one backend"):
        NixlOptions(backends=())


def test_policy_reaches_the_proxy_with_the_models_tokenizer_and_names_the_setup(tmp_path: Path) -> None:
    run = _plan(tmp_path, "--policy", "threshold:512", "--select", "prefix")
    proxy = run.proxy
    assert proxy[proxy.index("--policy") + 1] == "threshold:512"
    assert proxy[proxy.index("--tokenizer") + 1] == f"{run.decode[0].model}/tokenizer"  # the shape's, alone
    vllm = run.decode[0].command()
    assert vllm[vllm.index("--tokenizer") + 1] == f"{run.decode[0].model}/tokenizer"  # as vLLM's
    assert proxy[proxy.index("--select") + 1] == "prefix"
    write_plan(run.run_dir, run.launch_json())
    setup = from_plan(json.loads((run.run_dir / "launch.json").read_text()), run.run_dir / "launch.json",
                      run.endpoint)  # fmt: skip
    assert setup is not None and setup.policy == "threshold:512"
    assert setup.label == "1P1D example threshold:512"
    local = _plan(tmp_path, "--policy", "local").proxy
    assert "--tokenizer" not in local and local[local.index("--policy") + 1] == "local"
    assert "--policy" not in _plan(tmp_path).proxy  # split: the proxy's default, the command unchanged
    load = _plan(tmp_path, "--policy", "load").proxy  # load reads the prompt's tokens too
    assert load[load.index("--policy") + 1] == "load" and "--tokenizer" in load
    with pytest.raises(ValueError, match="unknown policy 'sometimes'; use split"):  # before any launch
        _plan(tmp_path, "--policy", "sometimes")


@pytest.mark.parametrize("connector", ["p2p_nccl", "passthrough"])
def test_policies_other_than_split_are_refused_where_decode_cannot_serve_alone(
    tmp_path: Path, connector: str
) -> None:
    flag = ["--passthrough"] if connector == "passthrough" else ["--connector", connector]
    with pytest.raises(ValueError, match="--policy local needs decode instances"):
        _plan(tmp_path, *flag, "--policy", "local")


@pytest.mark.parametrize("passthrough", [False, True])
def test_the_proxy_retry_is_turned_off_through_proxy_args(tmp_path: Path, passthrough: bool) -> None:
    from proxy.cli import build_parser as proxy_parser

    extra = ["--passthrough"] if passthrough else []
    run = _plan(tmp_path, *extra, "--proxy-args", "--retries 0 --eject-time 2")
    args = proxy_parser().parse_args(run.proxy[3:])  # after `python -m proxy`: what the proxy reads
    assert (args.retries, args.eject_time) == (0, 2.0)
    assert proxy_parser().parse_args(_plan(tmp_path, *extra).proxy[3:]).retries == 1  # the default
    write_plan(run.run_dir, run.launch_json())  # the launch plan every result's setup is read from
    assert json.loads((run.run_dir / "launch.json").read_text())["proxy"][-4:-2] == ["--retries", "0"]
