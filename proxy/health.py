"""Backend health: the /health check, and passive health (faulty instances leave rotation until healthy).

A request that meets a backend or network fault on an instance (connection refused, connect timeout,
leg timeout, connection lost) takes that instance out of rotation for `eject_s`. After that a
background probe asks its `/health` every `probe_interval_s`; the first 200 puts it back.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from proxy.config import ProxyConfig
from proxy.instances import Instance, InstancePool
from proxy.legs import LegTimeouts, connect_failure_reason
from proxy.metrics import ProxyMetrics

log = logging.getLogger("proxy.health")


async def check_health(session: aiohttp.ClientSession, url: str, timeouts: LegTimeouts) -> str:
    """GET url/health: "ok", or why not."""
    try:
        async with session.get(url + "/health", timeout=timeouts.health) as resp:
            await resp.read()
            return "ok" if resp.status == 200 else f"HTTP {resp.status}"
    except aiohttp.ClientConnectorError as exc:
        return f"unreachable: {connect_failure_reason(exc)}"
    except TimeoutError:
        return f"no answer within {timeouts.config.health_timeout_s:g} s"
    except aiohttp.ClientError as exc:
        return f"{type(exc).__name__}: {exc}"


class PassiveHealth:
    """Ejects instances on faults and re-admits them when their /health answers."""

    def __init__(self, config: ProxyConfig, pools: list[InstancePool], metrics: ProxyMetrics) -> None:
        self.eject_s = config.eject_s
        self.probe_interval_s = config.probe_interval_s
        self.pools = pools
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.eject_s > 0

    def fault(self, pool: InstancePool, inst: Instance, cause: str, message: str) -> None:
        """A request met fault `cause` on `inst`: take it out of rotation (once; later faults extend)."""
        if not self.enabled:
            return
        if pool.eject(inst, cause, message, self.eject_s):
            self.metrics.ejections.labels(pool.role, inst.url, cause).inc()
            log.warning(
                "%s instance %s out of rotation (%s): %s; /health is probed after %g s",
                pool.role,
                inst.url,
                cause,
                message,
                self.eject_s,
            )

    def start(self, session: aiohttp.ClientSession, timeouts: LegTimeouts) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._probe_loop(session, timeouts), name="proxy-health-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _probe_loop(self, session: aiohttp.ClientSession, timeouts: LegTimeouts) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            due = [(pool, inst) for pool in self.pools for inst in pool.due_for_probe()]
            if not due:
                continue
            results = await asyncio.gather(*(check_health(session, inst.url, timeouts) for _, inst in due))
            for (pool, inst), result in zip(due, results, strict=True):
                if result != "ok":
                    pool.keep_out(inst, result, self.probe_interval_s)
                    continue
                out_for = pool.readmit(inst)
                if out_for is not None:
                    log.info("%s instance %s back in rotation after %.1f s out", pool.role, inst.url, out_for)
