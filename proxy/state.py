"""Shared state of one proxy app: config, connector, instance pools, HTTP session, metrics, logs."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from proxy.config import ProxyConfig
from proxy.connectors import Connector, get_connector
from proxy.discovery import DiscoveryListener
from proxy.health import PassiveHealth
from proxy.instances import InstancePool
from proxy.legs import LegTimeouts
from proxy.metrics import ProxyMetrics
from proxy.policy import PromptCounter, route_policy_for
from proxy.timing import StageLog
from testbed.route_rule import RoutePolicy

log = logging.getLogger("proxy")

_SESSION_READ_BUFSIZE = 1 << 20  # aiohttp's buffer limit per response (pauses reading above 2x)


class ProxyState:
    """Everything the handlers share: pools, connector, session, metrics, stage log, discovery."""

    def __init__(self, config: ProxyConfig) -> None:
        config.validate()
        self.config = config
        self.connector: Connector = get_connector(config.connector)
        self.policy: RoutePolicy = route_policy_for(config.policy, config.connector)
        self.counter = PromptCounter(config.tokenizer)
        self.prefill_pool = InstancePool("prefill", config.prefill_select, config.prefill)
        self.decode_pool = InstancePool(
            "backend" if not self.connector.splits else "decode", config.decode_select, config.decode
        )
        self.metrics = ProxyMetrics()
        self.metrics.watch_pools(self.pools)
        self.health = PassiveHealth(config, self.pools(), self.metrics)
        self.timeouts = LegTimeouts.from_config(config)
        self.session: aiohttp.ClientSession | None = None
        self.discovery: DiscoveryListener | None = None
        self.stage_log: StageLog | None = None
        self.listen_url: str | None = None
        self.started = asyncio.Event()

    def open_resources(self) -> None:
        """Bind the discovery socket and open the stage log (idempotent); raises OSError.

        `start` calls it; the CLI calls it first so that a taken port is a one-line error.
        """
        cfg = self.config
        if cfg.discovery_port is not None and self.discovery is None:
            self.discovery = DiscoveryListener(
                cfg.discovery_host or cfg.host,
                cfg.discovery_port,
                cfg.discovery_ttl_s,
                self.prefill_pool,
                self.decode_pool,
            )
        if cfg.stage_log is not None and self.stage_log is None:
            self.stage_log = StageLog(cfg.stage_log)

    async def start(self) -> None:
        """Open the resources and the pooled session, start discovery; log one line."""
        self.open_resources()
        if self.discovery is not None:
            self.discovery.start()
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(
            connector=connector, read_bufsize=_SESSION_READ_BUFSIZE, auto_decompress=False
        )
        self.health.start(self.session, self.timeouts)
        log.info("%s", self.describe_line())
        self.started.set()

    async def stop(self) -> None:
        await self.health.stop()
        if self.session is not None:
            await self.session.close()
        if self.discovery is not None:
            self.discovery.stop()
        if self.stage_log is not None:
            self.stage_log.close()

    def describe_line(self) -> str:
        cfg = self.config

        def urls(pool: InstancePool) -> str:
            return (
                ",".join(i.url + (f"@{i.kv_address}" if i.kv_address else "") for i in pool.instances())
                or "-"
            )

        parts = [f"proxy on {self.listen_url or '(in-process)'}", f"connector={cfg.connector}"]
        if self.connector.splits:
            parts += [f"policy={self.policy.name}"]
            parts += [f"prefill[{cfg.prefill_select}]={urls(self.prefill_pool)}"]
            parts += [f"decode[{cfg.decode_select}]={urls(self.decode_pool)}"]
        else:
            parts += [f"backends[{cfg.decode_select}]={urls(self.decode_pool)}"]
        if self.discovery is not None:
            parts.append(f"discovery={self.discovery.address} ttl={cfg.discovery_ttl_s:g}s")
        if cfg.stage_log is not None:
            parts.append(f"stage_log={cfg.stage_log}")
        parts.append(f"eject={cfg.eject_s:g}s" if self.health.enabled else "passive_health=off")
        parts.append(f"retries={cfg.retries}")
        if cfg.setup_file is not None:
            parts.append(f"setup_file={cfg.setup_file}")
        return " ".join(parts)

    def pools(self) -> list[InstancePool]:
        return [self.prefill_pool, self.decode_pool] if self.connector.splits else [self.decode_pool]
