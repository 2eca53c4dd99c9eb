"""KV-transfer configs, per-instance environment and plan options for each connector and vLLM version.

See reference/launch_recipe.md; the NIXL settings follow the recipe that ran on 2 x H200
(../shared/gpu-host-nixl/README.md: vLLM 0.26.0 + nixl-cu13 1.5.1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CONNECTORS = ("p2p_nccl", "nixl", "example")
SEND_TYPES = ("PUT_ASYNC", "PUT", "GET")
NIXL_BUFFER_DEVICES = ("cuda", "cpu")
# pull: D reads P's blocks (NIXL READ; vLLM's NixlConnector alias). push: D registers its blocks and P
# writes into them (NIXL WRITE; vLLM >= 0.26). The proxy's round trip is the same for both.
NIXL_MODES = {"pull": "NixlConnector", "push": "NixlPushConnector"}
NIXL_DECODE_PORT_OFFSET = 100  # decode i listens on base + 100 + i (the recipe: P 5600, D 5700)
LOOPBACK = "127.0.0.1"
# UCX moves the KV over these, but needs a host transport too for its active messages (handshake,
# notifications): on 2 x H200, UCX_TLS=cuda_ipc,cuda_copy failed at engine start ("no active messages
# transport"), cuda_ipc,cuda_copy,tcp ran (results/h200x2/connectors/README.md).
UCX_GPU_ONLY_TRANSPORTS = ("cuda_ipc", "cuda_copy", "gdr_copy", "cuda")


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


@dataclass
class NixlOptions:
    """vLLM's own NIXL defaults, stated so the launch plan names them; each one is a launcher flag.

    Each instance runs a ZMQ handshake listener (the side channel) on VLLM_NIXL_SIDE_CHANNEL_HOST:PORT,
    which must differ per instance on one host; vLLM adds the data-parallel index to PORT.
    """

    buffer_device: str = "cuda"  # KV read GPU to GPU; "cpu" stages it in pinned host RAM
    backends: tuple[str, ...] = ("UCX",)  # NIXL transfer backends, in order of preference
    side_channel_port: int = 5600  # prefill i: port + i; decode i: port + 100 + i
    ucx_tls: str | None = None  # UCX_TLS for every instance; None leaves UCX's choice (all transports)
    mode: str = "pull"  # see NIXL_MODES

    def __post_init__(self) -> None:
        if self.mode not in NIXL_MODES:
            raise ValueError(f"NIXL mode must be one of {', '.join(NIXL_MODES)}, got {self.mode!r}")
        if self.buffer_device not in NIXL_BUFFER_DEVICES:
            raise ValueError(
                f"NIXL kv_buffer_device must be one of {', '.join(NIXL_BUFFER_DEVICES)}, "
                f"got {self.buffer_device!r}"
            )
        if not self.backends:
            raise ValueError("NIXL needs at least one backend, e.g. UCX")
        tls = [t.strip() for t in (self.ucx_tls or "").split(",") if t.strip()]
        excluding = bool(tls) and tls[0].startswith("^")  # "^a,b": every transport but a and b
        if tls and not excluding and all(t in UCX_GPU_ONLY_TRANSPORTS for t in tls):
            raise ValueError(
                f"UCX_TLS={self.ucx_tls} has no host transport for UCX's active messages (vLLM fails at "
                f"start with 'no active messages transport'); add one, e.g. {self.ucx_tls},tcp"
            )
        if not 1024 <= self.side_channel_port <= 65535 - NIXL_DECODE_PORT_OFFSET - 64:
            raise ValueError(f"NIXL side-channel port {self.side_channel_port} is out of range")

    def side_channel_port_of(self, role: str, index: int) -> int:
        return self.side_channel_port + (NIXL_DECODE_PORT_OFFSET if role == "decode" else 0) + index

    def env(self, role: str, index: int) -> dict[str, str]:
        env = {
            "VLLM_NIXL_SIDE_CHANNEL_HOST": LOOPBACK,  # an IP: "localhost" may resolve elsewhere
            "VLLM_NIXL_SIDE_CHANNEL_PORT": str(self.side_channel_port_of(role, index)),
        }
        if self.ucx_tls:
            env["UCX_TLS"] = self.ucx_tls
        return env


def instance_env(connector: str, role: str, index: int, nixl: NixlOptions | None = None) -> dict[str, str]:
    """Environment one instance needs for its connector (on top of launch.server.COMMON_ENV)."""
    env = {"VLLM_HOST_IP": LOOPBACK}  # ZMQ and NCCL endpoints bind loopback on a single host
    if connector == "p2p_nccl":
        # P2P NCCL keys KV by request id; vLLM would append a random suffix and decode would wait forever.
        env["VLLM_DISABLE_REQUEST_ID_RANDOMIZATION"] = "1"
    elif connector == "nixl":  # no pinning: P's answer names its request (remote_request_id)
        env.update((nixl or NixlOptions()).env(role, index))
    return env


def connector_options(
    connector: str,
    *,
    p2p: P2pNcclOptions | None = None,
    nixl: NixlOptions | None = None,
    storage_path: str | None = None,
) -> dict[str, Any] | None:
    """What the launch plan records as `connector_options` (None for the pass-through baseline)."""
    if connector == "p2p_nccl":
        return asdict(p2p or P2pNcclOptions())
    if connector == "nixl":
        opts = nixl or NixlOptions()
        return {
            "kv_buffer_device": opts.buffer_device,
            "backends": list(opts.backends),
            "side_channel_host": LOOPBACK,
            "side_channel_port": opts.side_channel_port,
            "ucx_tls": opts.ucx_tls,
            "mode": opts.mode,
            "kv_connector": NIXL_MODES[opts.mode],
        }
    if connector == "example":
        return {"shared_storage_path": storage_path}
    return None


def kv_transfer_config(
    connector: str,
    role: str,
    *,
    kv_port: int | None = None,
    p2p: P2pNcclOptions | None = None,
    nixl: NixlOptions | None = None,
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
    if connector == "nixl":  # kv_both also works in 0.26 but is deprecated there
        opts = nixl or NixlOptions()
        return {
            "kv_connector": NIXL_MODES[opts.mode],
            "kv_role": "kv_producer" if producer else "kv_consumer",
            "kv_buffer_device": opts.buffer_device,
            "kv_connector_extra_config": {"backends": list(opts.backends)},
        }
    if connector == "example":
        if not storage_path:
            raise ValueError("the example connector needs a shared storage directory")
        return {
            "kv_connector": "ExampleConnector",
            "kv_role": "kv_producer" if producer else "kv_consumer",
            "kv_connector_extra_config": {"shared_storage_path": storage_path},
        }
    raise ValueError(f"unknown connector {connector!r}; choose one of {', '.join(CONNECTORS)}")
