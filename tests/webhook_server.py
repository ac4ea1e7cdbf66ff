"""A real HTTP server on 127.0.0.1 for notification tests: records what is POSTed, and can
answer late (a slow endpoint) or fail."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "notify.schema.json"


@dataclass
class Hook:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    status: int = 200
    location: str | None = None  # sent with a 3xx status


@contextmanager
def webhook(
    port: int = 0, delay_s: float = 0.0, status: int = 200, location: str | None = None
) -> Iterator[Hook]:
    hook = Hook("", delay_s=delay_s, status=status, location=location)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(hook.delay_s)
            hook.received.append(json.loads(body))
            hook.headers.append(dict(self.headers))
            hook.paths.append(self.path)
            self.send_response(hook.status)
            if hook.location:
                self.send_header("Location", hook.location)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


def check_schema(doc: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
