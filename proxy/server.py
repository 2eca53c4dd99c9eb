"""Serve the app with uvicorn (httptools; hypercorn on request): on a pre-bound socket (CLI) or in-process
on an ephemeral port (tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

from proxy.app import ProxyState


def bind_listen_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on host:port (port 0: the OS picks); raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)  # connections queue from now on, before the server starts accepting
    except OSError:
        sock.close()
        raise
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def hypercorn_config(sock: socket.socket) -> Config:
    """Hypercorn settings for the proxy (`--server hypercorn`); takes ownership of `sock`.

    Hypercorn has no bound on reading a request head (its read_timeout would also cut idle streams);
    the body's bound is the app's.
    """
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2.0
    config.keep_alive_timeout = 75.0
    config.backlog = 2048
    config.include_server_header = False
    return config


SERVERS = ("uvicorn", "hypercorn")


def _uvicorn_server(config: object) -> object:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            # We stop it through should_exit; uvicorn's own handlers would re-raise SIGTERM on exit.
            yield

    return Server(config)  # type: ignore[arg-type]


async def _signal_event() -> None:
    """Return on SIGINT or SIGTERM (the CLI's shutdown trigger)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve_uvicorn(
    app: Quart, sock: socket.socket, shutdown_trigger: Callable[[], Awaitable[None]] | None
) -> None:
    """uvicorn with httptools (about half hypercorn's per-request and per-chunk CPU cost), with a bound
    on reading each request head."""
    import uvicorn

    from proxy.http_protocol import protocol_factory

    state = app.extensions["proxy"]
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        http=protocol_factory(state.config.request_read_timeout_s),  # type: ignore[arg-type]
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=2,
        server_header=False,
        date_header=False,
    )
    server: Any = _uvicorn_server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    trigger = asyncio.create_task((shutdown_trigger or _signal_event)())
    await asyncio.wait({serving, trigger}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    trigger.cancel()
    await serving


async def serve_app(
    app: Quart,
    sock: socket.socket,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    server: str = "uvicorn",
) -> None:
    """Serve `app` on the listening `sock` until `shutdown_trigger` returns (None: SIGINT/SIGTERM)."""
    state = app.extensions.get("proxy")
    if isinstance(state, ProxyState):
        state.listen_url = socket_url(sock)
    if server == "uvicorn":
        await _serve_uvicorn(app, sock, shutdown_trigger)
        return
    await serve(app, hypercorn_config(sock), shutdown_trigger=shutdown_trigger)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_app(
    app: Quart, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 10.0
) -> AsyncIterator[str]:
    """Serve the proxy app in the current event loop; yields its base URL, stops it on exit."""
    state = app.extensions["proxy"]
    sock = bind_listen_socket(host, port)
    url = socket_url(sock)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_app(app, sock, stop.wait))
    started = asyncio.create_task(state.started.wait())
    done, _ = await asyncio.wait(
        {task, started}, timeout=startup_timeout_s, return_when=asyncio.FIRST_COMPLETED
    )
    if started not in done:
        started.cancel()
        stop.set()
        if task in done:
            task.result()  # re-raise the startup failure
        raise TimeoutError(f"proxy did not start within {startup_timeout_s:g} s")
    try:
        yield url
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10.0)
