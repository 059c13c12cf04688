"""A real HTTP receiver on loopback for the notification tests: answers, fails or hangs.

`Receiver(mode)` listens on 127.0.0.1 on a free port in a background thread and keeps
every request it got (headers and raw body). `mode` is ``ok`` (HTTP 200), ``fail``
(HTTP 500) or ``hang`` (reads the request, then answers nothing until closed).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, mode: str = "ok", path: str = "/hook") -> None:
        self.mode, self.path = mode, path
        self.deliveries: list[Delivery] = []
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.deliveries.append(Delivery(self.path, dict(self.headers.items()),
                                                    body, time.time()))
                if receiver.mode == "hang":
                    receiver._release.wait(60)
                    return
                status = 200 if receiver.mode == "ok" else 500
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"boom")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def events(self) -> list[str]:
        return [d.headers.get("X-Retrainer-Event", "") for d in self.deliveries]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        end = time.monotonic() + timeout
        while len(self.deliveries) < count and time.monotonic() < end:
            time.sleep(0.05)
        return list(self.deliveries)

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()
