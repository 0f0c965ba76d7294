"""`ttcl serve`'s listening: sockets bound before the models load, and uvicorn run on them until a signal.

A port in use or a bad host fails at `bind`, before anything loads; a first Ctrl-C drains the requests in
flight, a second ends the process at once (ttcl/serve.py holds the app and the server behind it).
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from typing import Any

from ttcl.serve import Server, create_app


def bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound (not yet listening) to every address `host` resolves to, as asyncio's create_server binds
    them, so that a port in use or a bad host fails here, as an OSError, before uvicorn starts. Port 0: one free
    port, the same for every address."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, type_, proto, _, addr in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, type_, proto)
            except OSError:  # a family this machine cannot open (IPv6 disabled): skipped, as asyncio does
                continue
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:
                addr = (addr[0], socks[0].getsockname()[1], *addr[2:])
            sock.bind(addr)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    if not socks:
        raise OSError(f"{host!r} resolves to no address")
    return socks


def _exit_now() -> None:
    """End the process now, with the documented Ctrl-C code: the requests in flight are dropped (their connections
    close), and nothing waits for the worker thread, which may be inside a model call; leaving through the
    interpreter's shutdown would abort in the C++ runtime under it ("terminate called without an active exception")."""
    import os
    import sys

    from ttcl.errors import EXIT_INTERRUPTED

    sys.stderr.write("ttcl serve: interrupted again, stopped at once (requests in flight dropped)\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def run_uvicorn(server: Server, sockets: list[socket.socket], on_listening: Callable[[], None]) -> bool:
    """Serve the app on `sockets` until a signal stops it; `on_listening` runs once they accept connections.
    A SIGINT comes back as KeyboardInterrupt after a graceful shutdown (uvicorn re-raises the signal it caught;
    `uvicorn.run` would swallow it). Returns whether the server started."""
    import uvicorn

    class _Uvicorn(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                on_listening()

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.should_exit and sig == signal.SIGINT:  # the second Ctrl-C: stop at once, as promised
                _exit_now()
            super().handle_exit(sig, frame)

    userver = _Uvicorn(uvicorn.Config(create_app(server), log_level="warning"))
    try:
        userver.run(sockets=sockets)
    except SystemExit:  # uvicorn's own "startup failed" (a lifespan error): reported by the caller
        pass
    finally:
        server.close()
        for sock in sockets:
            sock.close()
    return userver.started
