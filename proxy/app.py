"""The Quart app around the proxy: its routes, and the ASGI handler that splits each generation request.

Endpoints: POST /v1/completions and POST /v1/chat/completions (the hot path, served from ASGI by
proxy/handler.py in front of Quart), GET /v1/models, /health, /metrics, /instances, /setup. Every
error, unknown paths and wrong methods included, is an OpenAI-style JSON body.
See reference/proxy_protocol.md for the protocol.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from proxy.config import ProxyConfig
from proxy.errors import error_body
from proxy.handler import GenerationFastPath
from proxy.health import check_health
from proxy.instances import NoInstanceError
from proxy.legs import leg_failure
from proxy.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from proxy.setup_view import setup_document
from proxy.state import ProxyState

__all__ = ["ProxyState", "create_app"]

_JSON = "application/json"
log = logging.getLogger("proxy")


def _json_response(body: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(body), status=status, content_type=_JSON)


def create_app(config: ProxyConfig) -> Quart:
    """Build the proxy app for a resolved config (connector not 'auto'); serve it with proxy.server.

    The pooled aiohttp session, the stage log, the ZMQ discovery socket and the health probe start when
    serving starts and stop when it stops. The shared state is `app.extensions["proxy"]` (a ProxyState).
    """
    state = ProxyState(config)
    app = Quart("proxy")
    app.config["RESPONSE_TIMEOUT"] = None  # streams last as long as the decode leg's own timeouts allow
    app.extensions["proxy"] = state
    app.asgi_app = GenerationFastPath(app.asgi_app, state)  # type: ignore[method-assign]

    @app.before_serving
    async def _start() -> None:
        await state.start()

    @app.after_serving
    async def _stop() -> None:
        await state.stop()

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = f"{request.method} {request.path}: {exc.name}"
        if status == 404:
            message += "; the proxy serves POST /v1/completions, POST /v1/chat/completions, GET /v1/models, "
            message += "/health, /metrics, /instances, /setup"
        response = _json_response(error_body(status, message), status)
        for name, value in exc.get_headers():
            if name.lower() == "allow":
                response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    async def _internal_error(exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.path)
        message = f"internal proxy error: {type(exc).__name__}: {exc}"
        return _json_response(error_body(500, message), 500)

    @app.get("/v1/models")
    async def models() -> Response:
        try:
            inst = state.decode_pool.acquire()
        except NoInstanceError as exc:
            return _json_response(error_body(503, str(exc)), 503)
        assert state.session is not None
        headers = {"Authorization": auth} if (auth := request.headers.get("Authorization")) else None
        try:
            async with state.session.get(
                inst.url + "/v1/models", headers=headers, timeout=state.timeouts.prefill
            ) as resp:
                data = await resp.read()
                return Response(
                    data, status=resp.status, content_type=resp.headers.get("Content-Type", _JSON)
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            err = leg_failure("decode", inst.url, exc, state.timeouts)
            return _json_response(err.body(), err.status)
        finally:
            state.decode_pool.release(inst)

    @app.get("/health")
    async def health() -> Response:
        assert state.session is not None
        down: dict[str, str] = {}
        checks: list[tuple[str, str]] = []
        for pool in state.pools():
            live = pool.instances()
            if not live:
                down[pool.role] = f"no {pool.role} instance registered"
            checks += [(pool.role, inst.url) for inst in live]
        results = await asyncio.gather(
            *(check_health(state.session, url, state.timeouts) for _, url in checks)
        )
        backends = {
            url: {"role": role, "status": res} for (role, url), res in zip(checks, results, strict=True)
        }
        down.update({url: res for (_, url), res in zip(checks, results, strict=True) if res != "ok"})
        if not down:
            return _json_response({"status": "ok", "backends": backends}, 200)
        message = "unhealthy: " + "; ".join(f"{k}: {v}" for k, v in down.items())
        body = {"status": "unhealthy", "backends": backends, "down": down, **error_body(503, message)}
        return _json_response(body, 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), status=200, content_type=METRICS_CONTENT_TYPE)

    @app.get("/instances")
    async def instances() -> Response:
        body: dict[str, Any] = {"connector": state.config.connector}
        for pool in state.pools():
            body[pool.role] = pool.describe()
        return _json_response(body, 200)

    @app.get("/setup")
    async def setup() -> Response:
        return _json_response(setup_document(state), 200)

    return app
