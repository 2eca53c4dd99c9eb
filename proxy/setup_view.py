"""GET /setup: the serving setup, as the launcher wrote it (`--setup-file`) plus the proxy's own live view.

Shape (reference/proxy_protocol.md, section 7):
    {"launcher": <the setup file's JSON object, or null>, "setup_file": <path or null>,
     "proxy": {"connector", "splits", "policy", "prompt_tokens", "listen_url", "selection",
               "instances": {role: [...]}, "discovery", "passive_health", "timeouts_s"}}
The file is read again on every request, so that what the launcher adds later (instance versions,
say) shows; it must hold a JSON object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from proxy.config import ConfigError
from proxy.state import ProxyState


def read_setup_file(path: Path) -> dict[str, Any]:
    """The setup file's JSON object; ConfigError saying what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--setup-file {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--setup-file {path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--setup-file {path}: must hold a JSON object, not {type(doc).__name__}")
    return doc


def live_view(state: ProxyState) -> dict[str, Any]:
    """What the proxy itself knows: connector, policies, instances per role with their rotation state."""
    cfg = state.config
    pools = state.pools()
    return {
        "connector": cfg.connector,
        "splits": state.connector.splits,
        "policy": state.policy.name if state.connector.splits else None,
        "prompt_tokens": state.counter.method,
        "listen_url": state.listen_url,
        "selection": {
            pool.role: cfg.prefill_select if pool is state.prefill_pool else cfg.decode_select
            for pool in pools
        },
        "instances": {pool.role: pool.describe() for pool in pools},
        "discovery": None if state.discovery is None else state.discovery.address,
        "passive_health": (
            {"eject_s": cfg.eject_s, "probe_interval_s": cfg.probe_interval_s}
            if state.health.enabled
            else None
        ),
        "retries": cfg.retries,  # legs sent again per request (after a fault, before any byte to the client)
        "timeouts_s": {
            "connect": cfg.connect_timeout_s,
            "prefill": cfg.prefill_timeout_s,
            "decode": cfg.decode_timeout_s,
            "decode_chunk": cfg.decode_chunk_timeout_s,
            "health": cfg.health_timeout_s,
            "request_read": cfg.request_read_timeout_s,
        },
    }


def setup_document(state: ProxyState) -> dict[str, Any]:
    """The body of GET /setup; a setup file that went bad since start-up shows as `launcher_error`."""
    path = state.config.setup_file
    doc: dict[str, Any] = {"launcher": None, "setup_file": None if path is None else str(path)}
    if path is not None:
        try:
            doc["launcher"] = read_setup_file(path)
        except ConfigError as exc:
            doc["launcher_error"] = str(exc)
    doc["proxy"] = live_view(state)
    return doc
