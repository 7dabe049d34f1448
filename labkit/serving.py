"""A real uvicorn server on a loopback socket, for labs and tests that serve an ASGI app."""
from __future__ import annotations

import socket
import threading
import time


class RunningServer:
    """uvicorn on a background thread, on a socket bound up front (so the port is free and known before start).

    As a context manager it always asks uvicorn to exit and joins the thread, even after a failure. uvicorn's exit
    is graceful: it stops accepting, waits up to `grace_s` for in-flight requests, then runs the app's shutdown."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, grace_s: float = 3.0, backlog: int = 2048):
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.url = f"http://{host}:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=grace_s,
                                access_log=False, backlog=backlog)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True,
                                       name="uvicorn")

    def __enter__(self) -> "RunningServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("uvicorn did not start within 30 s; see the log above")
            time.sleep(0.02)
        return self

    def shutdown(self, timeout: float = 20) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=timeout)

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.socket.close()
