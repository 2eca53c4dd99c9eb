"""Disaggregated-serving proxy: splits each request into a prefill and a decode leg (an ASGI handler in
front of a Quart app, which serves the other routes).

Public API: `create_app(ProxyConfig) -> Quart`, `ProxyConfig`, `InstanceSpec`, `parse_instances`,
`running_app` (serve in-process on an ephemeral port), `resolve_connector`. CLI: `python -m proxy`.
"""

from __future__ import annotations

from proxy.app import ProxyState, create_app
from proxy.config import ConfigError, InstanceSpec, ProxyConfig, parse_instances
from proxy.connectors import resolve_connector
from proxy.server import running_app
from proxy.timing import TIMING_COMMENT_PREFIX, TIMING_HEADER, StageTiming, parse_timing_comment

__all__ = [
    "TIMING_COMMENT_PREFIX",
    "TIMING_HEADER",
    "ConfigError",
    "InstanceSpec",
    "ProxyConfig",
    "ProxyState",
    "StageTiming",
    "create_app",
    "parse_instances",
    "parse_timing_comment",
    "resolve_connector",
    "running_app",
]
