"""ZMQ service discovery, compatible with vLLM's P2pNcclEngine heartbeats (xPyD).

Each vLLM instance started with `kv_connector_extra_config.proxy_ip/proxy_port/http_port` runs a DEALER
socket that sends, every 3 s, one msgpack map:
    {"type": "P" | "D", "http_address": "ip:port", "zmq_address": "ip:port"}
We also accept {"type": "register", "role": "P" | "D", "http_address": ..., "zmq_address": ...}.
A ROUTER socket in a background thread receives them; an entry expires `ttl_s` after its last message.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import msgpack
import zmq

from proxy.config import ConfigError, check_kv_address, normalize_url
from proxy.instances import InstancePool

log = logging.getLogger("proxy.discovery")

_POLL_MS = 100


def parse_registration(message: Any) -> tuple[str, str, str]:
    """msgpack-decoded registration -> (role "P"|"D", http URL, zmq address); ValueError if malformed."""
    if not isinstance(message, dict):
        raise ValueError(f"registration must be a map, got {type(message).__name__}")
    role = message.get("type")
    if role == "register":
        role = message.get("role")
    if role not in ("P", "D"):
        raise ValueError(f"registration type/role must be 'P' or 'D', got {role!r}")
    http_address = message.get("http_address")
    zmq_address = message.get("zmq_address")
    if not isinstance(http_address, str) or not isinstance(zmq_address, str):
        raise ValueError("registration needs string fields http_address and zmq_address")
    try:
        return role, normalize_url(http_address), check_kv_address(zmq_address)
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc


class DiscoveryListener:
    """Background thread: ROUTER socket bound to host:port feeding the prefill/decode pools."""

    def __init__(
        self, host: str, port: int, ttl_s: float, prefill: InstancePool, decode: InstancePool
    ) -> None:
        self.ttl_s = ttl_s
        self._pools = {"P": prefill, "D": decode}
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            if port == 0:
                self.port = self._sock.bind_to_random_port(f"tcp://{host}")
            else:
                self._sock.bind(f"tcp://{host}:{port}")
                self.port = port
        except zmq.ZMQError as exc:
            self._sock.close()
            self._ctx.term()
            raise OSError(f"cannot bind discovery socket tcp://{host}:{port}: {exc}") from exc
        self.address = f"tcp://{host}:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proxy-discovery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread and close the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._sock.close()
        self._ctx.term()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(_POLL_MS):
                continue
            frames = self._sock.recv_multipart()
            self.handle(frames[-1], sender=frames[0] if len(frames) > 1 else b"")

    def handle(self, payload: bytes, sender: bytes = b"") -> None:
        """Register one heartbeat; malformed ones are logged and dropped."""
        try:
            role, url, zmq_address = parse_registration(msgpack.unpackb(payload, raw=False))
        except Exception as exc:  # a bad peer must not stop the listener
            log.warning("discovery: ignoring message from %r: %s", sender, exc)
            return
        if self._pools[role].register(url, zmq_address, self.ttl_s):
            log.info("discovery: %s instance %s (kv %s) registered", role, url, zmq_address)
