"""Proxy configuration: backends, connector, selection policies, timeouts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CONNECTORS = ("auto", "p2p_nccl", "nixl", "example", "passthrough")
POLICIES = ("round_robin", "least_outstanding", "prefix")
RETRIES = (0, 1)  # a request's legs sent again after a backend fault before any byte reached the client

# host:port of a KV (ZMQ) endpoint. The host may not contain "___", ":" runs are only allowed for
# bracketed IPv6; whitespace, "@", "/" never.
_KV_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})$")


class ConfigError(ValueError):
    """A configuration value is wrong; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """One vLLM instance: its HTTP base URL and (for p2p_nccl) its KV/ZMQ address `host:port`."""

    url: str
    kv_address: str | None = None


@dataclass
class ProxyConfig:
    """Everything `create_app` needs. Times are seconds."""

    connector: str = "example"
    prefill: list[InstanceSpec] = field(default_factory=list)
    decode: list[InstanceSpec] = field(default_factory=list)
    prefill_select: str = "round_robin"
    decode_select: str = "round_robin"
    host: str = "127.0.0.1"
    port: int = 8000
    discovery_host: str | None = None  # None: same as host
    discovery_port: int | None = None  # None: no ZMQ discovery; 0: ephemeral (tests)
    discovery_ttl_s: float = 10.0
    stage_log: Path | None = None
    prefill_timeout_s: float = 300.0
    decode_timeout_s: float = 3600.0
    decode_chunk_timeout_s: float = 300.0
    connect_timeout_s: float = 5.0
    health_timeout_s: float = 2.0
    request_read_timeout_s: float = 30.0  # a client's request head and body must arrive within this
    eject_s: float = 5.0  # passive health: a faulty instance stays out at least this long; 0: never
    probe_interval_s: float = 1.0  # then its /health is asked this often until it answers 200
    setup_file: Path | None = None  # the launcher's JSON, served at GET /setup
    policy: str = "split"  # per-request path: split, local, threshold:N, load[:P:D] (testbed/route_rule.py)
    tokenizer: str | None = None  # counts prompt tokens for threshold/load; None: characters / 4
    retries: int = 1  # legs sent again to another instance per request (0: a failed leg fails it)

    def validate(self) -> None:
        """Raise ConfigError for the first inconsistent setting."""
        if self.connector not in CONNECTORS:
            raise ConfigError(f"unknown connector {self.connector!r}; choose one of {', '.join(CONNECTORS)}")
        if self.connector == "auto":
            raise ConfigError("connector 'auto' must be resolved first (proxy.connectors.resolve_connector)")
        for name in ("prefill_select", "decode_select"):
            if getattr(self, name) not in POLICIES:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(POLICIES)}"
                )
        for name in (
            "prefill_timeout_s",
            "decode_timeout_s",
            "decode_chunk_timeout_s",
            "connect_timeout_s",
            "health_timeout_s",
            "discovery_ttl_s",
            "request_read_timeout_s",
            "probe_interval_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.retries not in RETRIES:
            raise ConfigError(f"retries must be 0 or 1 (got {self.retries!r}); 0 turns the retry off")
        if not self.eject_s >= 0:
            raise ConfigError(f"eject_s must be >= 0 (0 never takes an instance out; got {self.eject_s})")
        if self.discovery_port is not None and not 0 <= self.discovery_port <= 65535:
            raise ConfigError(f"discovery port {self.discovery_port} is out of range 0..65535")
        discovery = self.discovery_port is not None
        if self.connector == "passthrough":
            if self.prefill:
                raise ConfigError(
                    "connector passthrough has no prefill leg; give backends with --backend only"
                )
            if discovery:
                raise ConfigError("ZMQ discovery registers P/D pairs; it does not apply to passthrough")
            if not self.decode:
                raise ConfigError("connector passthrough needs at least one backend (--backend URL[,URL])")
            return
        if not discovery and not self.prefill:
            raise ConfigError("no prefill instance: give --prefill URL[,URL] or --discovery-port")
        if not discovery and not self.decode:
            raise ConfigError("no decode instance: give --decode URL[,URL] or --discovery-port")
        if self.connector == "p2p_nccl":
            for role, specs in (("prefill", self.prefill), ("decode", self.decode)):
                for spec in specs:
                    if spec.kv_address is None:
                        raise ConfigError(
                            f"p2p_nccl needs the KV (ZMQ) address of every instance: write the {role} "
                            f"instance as {spec.url}@HOST:KV_PORT"
                        )


def normalize_url(text: str) -> str:
    """`http://host:port` without a trailing slash; `host:port` gets `http://`."""
    text = text.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"bad instance URL {text!r}; expected http://HOST:PORT")
    try:
        parts.port  # noqa: B018 - raises for a non-numeric port
    except ValueError as exc:
        raise ConfigError(f"bad port in instance URL {text!r}") from exc
    if parts.path or parts.query:
        raise ConfigError(f"instance URL {text!r} must be a base URL without a path (the proxy adds /v1/...)")
    return text


def check_kv_address(text: str) -> str:
    """Validate a KV/ZMQ address `host:port` so that vLLM's request-id regexes parse it back."""
    text = text.strip()
    match = _KV_ADDRESS.match(text)
    if match is None or "___" in text or not 0 < int(match["port"]) <= 65535:
        raise ConfigError(f"bad KV address {text!r}; expected HOST:PORT, e.g. 127.0.0.1:21001")
    return text


def parse_instance(text: str) -> InstanceSpec:
    """`URL` or `URL@KV_HOST:KV_PORT` -> InstanceSpec."""
    text = text.strip()
    if not text:
        raise ConfigError("empty instance in list")
    url, sep, kv = text.rpartition("@")
    if sep and "/" not in kv and _KV_ADDRESS.match(kv.strip()):
        return InstanceSpec(normalize_url(url), check_kv_address(kv))
    if "@" in text:
        raise ConfigError(f"bad instance {text!r}; expected URL or URL@HOST:KV_PORT")
    return InstanceSpec(normalize_url(text))


def parse_instances(text: str) -> list[InstanceSpec]:
    """Comma-separated `URL[@KV]` list -> specs (duplicate URLs rejected)."""
    specs = [parse_instance(item) for item in text.split(",")]
    urls = [spec.url for spec in specs]
    dupes = sorted({url for url in urls if urls.count(url) > 1})
    if dupes:
        raise ConfigError(f"instance listed twice: {', '.join(dupes)}")
    return specs
