"""KV-transfer configs for each connector and vLLM version (see reference/launch_recipe.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONNECTORS = ("p2p_nccl", "nixl", "example")
SEND_TYPES = ("PUT_ASYNC", "PUT", "GET")


def version_tuple(version: str | None) -> tuple[int, int]:
    if not version:
        return (0, 0)
    parts = version.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return (0, 0)


def auto_connector(vllm_version: str | None, gpu: bool) -> str:
    """P2P NCCL where vLLM still has it (<= 0.23), NIXL after; the shared-storage example on CPU."""
    if not gpu:
        return "example"
    if vllm_version is None:
        raise ValueError("vLLM is not installed here; pass --connector explicitly")
    return "p2p_nccl" if version_tuple(vllm_version) <= (0, 23) else "nixl"


@dataclass
class P2pNcclOptions:
    """Defaults are the best measured on 2 x H200 (results/h200x2/README.md): GET, 16 channels."""

    send_type: str = "GET"
    nccl_num_channels: int = 16
    mem_pool_size_gb: int = 8  # pinned host RAM per instance; vLLM's default (32) is wasteful here
    prefill_buffer_size: str = "3e10"  # GET: P holds each request's KV until D pulls it
    decode_buffer_size: str = "8e9"  # D's GPU buffer for received KV before it spills to host

    def __post_init__(self) -> None:
        if self.send_type not in SEND_TYPES:
            raise ValueError(f"send_type must be one of {', '.join(SEND_TYPES)}, got {self.send_type!r}")


def kv_transfer_config(
    connector: str,
    role: str,
    *,
    kv_port: int | None = None,
    p2p: P2pNcclOptions | None = None,
    storage_path: str | None = None,
    discovery: tuple[str, int, int] | None = None,
) -> dict[str, Any]:
    """The `--kv-transfer-config` of one instance. `role` is "prefill" or "decode".

    `discovery` = (proxy ip, proxy ZMQ port, this instance's HTTP port) makes a P2P instance register
    itself with the proxy (xPyD without a static list).
    """
    if role not in ("prefill", "decode"):
        raise ValueError(f"role must be prefill or decode, got {role!r}")
    producer = role == "prefill"
    if connector == "p2p_nccl":
        opts = p2p or P2pNcclOptions()
        if kv_port is None:
            raise ValueError("p2p_nccl needs a kv_port per instance")
        extra: dict[str, Any] = {
            "send_type": opts.send_type,
            "nccl_num_channels": str(opts.nccl_num_channels),
            "mem_pool_size_gb": str(opts.mem_pool_size_gb),
        }
        if discovery is not None:
            ip, port, http_port = discovery
            extra.update({"proxy_ip": ip, "proxy_port": str(port), "http_port": str(http_port)})
        return {
            "kv_connector": "P2pNcclConnector",
            "kv_role": "kv_producer" if producer else "kv_consumer",
            "kv_buffer_size": opts.prefill_buffer_size if producer else opts.decode_buffer_size,
            "kv_port": str(kv_port),
            "kv_connector_extra_config": extra,
        }
    if connector == "nixl":
        return {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
    if connector == "example":
        if not storage_path:
            raise ValueError("the example connector needs a shared storage directory")
        return {
            "kv_connector": "ExampleConnector",
            "kv_role": "kv_producer" if producer else "kv_consumer",
            "kv_connector_extra_config": {"shared_storage_path": storage_path},
        }
    raise ValueError(f"unknown connector {connector!r}; choose one of {', '.join(CONNECTORS)}")
