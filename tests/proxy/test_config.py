"""Instance-list parsing, config validation and connector resolution."""

from __future__ import annotations

import pytest

from proxy.cli import build_parser, config_from_args
from proxy.config import ConfigError, InstanceSpec, ProxyConfig, parse_instances
from proxy.connectors import installed_vllm_version, resolve_connector


def test_instance_list_with_and_without_kv_addresses() -> None:
    specs = parse_instances("http://127.0.0.1:8100@127.0.0.1:21001, 127.0.0.1:8101/,https://h:1")
    assert specs == [
        InstanceSpec("http://127.0.0.1:8100", "127.0.0.1:21001"),
        InstanceSpec("http://127.0.0.1:8101", None),
        InstanceSpec("https://h:1", None),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://h:1", "bad instance URL"),
        ("http://h:1/v1", "without a path"),
        ("http://h:1@h", "bad instance"),
        ("http://h:1@h___x:5", "bad instance"),
        ("http://h:1,http://h:1", "listed twice"),
        ("http://h:port", "bad port"),
        ("", "empty instance"),
    ],
)
def test_bad_instance_lists(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_instances(text)


def test_p2p_nccl_requires_kv_addresses() -> None:
    cfg = ProxyConfig(
        connector="p2p_nccl", prefill=[InstanceSpec("http://h:1", "h:2")], decode=[InstanceSpec("http://h:3")]
    )
    with pytest.raises(ConfigError, match=r"decode instance as http://h:3@HOST:KV_PORT"):
        cfg.validate()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"connector": "example"}, "no prefill instance"),
        ({"connector": "example", "prefill": [InstanceSpec("http://h:1")]}, "no decode instance"),
        ({"connector": "passthrough"}, "at least one backend"),
        ({"connector": "passthrough", "prefill": [InstanceSpec("http://h:1")]}, "no prefill leg"),
        ({"connector": "bogus"}, "unknown connector"),
        ({"connector": "auto"}, "must be resolved"),
        (
            {"connector": "example", "discovery_port": 1, "prefill_timeout_s": 0},
            "prefill_timeout_s must be > 0",
        ),
        ({"connector": "example", "discovery_port": 1, "decode_select": "random"}, "unknown decode_select"),
        ({"connector": "example", "discovery_port": 1, "retries": 2}, "retries must be 0 or 1"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ProxyConfig(**kwargs).validate()


def test_discovery_alone_is_enough_for_a_split_connector() -> None:
    ProxyConfig(connector="p2p_nccl", discovery_port=30001).validate()


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.23.0", "p2p_nccl"),
        ("0.23.1rc1", "p2p_nccl"),
        ("0.10.2", "p2p_nccl"),
        ("0.24.0", "nixl"),
        ("0.32.0", "nixl"),
        ("1.0.0", "nixl"),
    ],
)
def test_auto_connector_by_vllm_version(version: str, expected: str) -> None:
    assert resolve_connector("auto", version) == expected


def test_auto_connector_without_vllm_asks_for_a_choice() -> None:
    with pytest.raises(ConfigError, match="choose one: --connector"):
        resolve_connector("auto", None, detect=False)


def test_auto_connector_follows_the_installed_vllm() -> None:
    version = installed_vllm_version()
    if version is None:
        with pytest.raises(ConfigError):
            resolve_connector("auto")
    else:
        assert resolve_connector("auto") == resolve_connector("auto", version)


def test_cli_arguments_become_a_config() -> None:
    args = build_parser().parse_args(
        [
            "--connector", "p2p_nccl",
            "--prefill", "http://127.0.0.1:8100@127.0.0.1:21001",
            "--decode", "http://127.0.0.1:8200@127.0.0.1:22001,http://127.0.0.1:8201@127.0.0.1:22002",
            "--select", "least_outstanding",
            "--prefill-select", "round_robin",
            "--decode-chunk-timeout", "7",
            "--retries", "0",
        ]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.retries == 0 and config_from_args(build_parser().parse_args(["--connector", "p2p_nccl",
        "--discovery-port", "1"])).retries == 1  # fmt: skip
    assert cfg.connector == "p2p_nccl"
    assert [s.kv_address for s in cfg.decode] == ["127.0.0.1:22001", "127.0.0.1:22002"]
    assert (cfg.prefill_select, cfg.decode_select) == ("round_robin", "least_outstanding")
    assert cfg.decode_chunk_timeout_s == 7


def test_cli_passthrough_uses_backend() -> None:
    args = build_parser().parse_args(["--connector", "passthrough", "--backend", "http://a:1,http://b:2"])
    cfg = config_from_args(args)
    assert [s.url for s in cfg.decode] == ["http://a:1", "http://b:2"]
    assert cfg.prefill == []
    with pytest.raises(ConfigError, match="--backend is for --connector passthrough"):
        config_from_args(build_parser().parse_args(["--connector", "example", "--backend", "http://a:1"]))
