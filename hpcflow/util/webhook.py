"""POST a JSON document (stdlib http.client), bounded in time, to an address checked before
it is connected to: the host is resolved once (within the timeout), every address it has is
checked (no link-local or metadata address), and the connection goes to that address (a
second lookup cannot rebind it). Redirects are never followed, so a secret never travels to
a host it was not meant for. The secrets are kept out of any message it returns."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from hpcflow.util.urls import check_webhook, forbidden_address, mask


def _resolve(host: str, port: int, timeout: float) -> list[str]:
    """The host's addresses, or raise: getaddrinfo has no timeout of its own."""
    got: dict[str, Any] = {}

    def lookup() -> None:
        try:
            got["v"] = [i[4][0] for i in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
        except OSError as e:
            got["e"] = e

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no address for {host} within {timeout:.0f} s")
    if "e" in got:
        raise got["e"]
    return list(dict.fromkeys(got["v"]))


class _Pinned(http.client.HTTPSConnection):
    """HTTPS to one address, the certificate checked against the URL's host name."""

    def __init__(self, host: str, ip: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, ip: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


def post_json(
    url: str, doc: dict[str, Any], timeout: float, headers: dict[str, str] | None = None,
    secrets: list[str] | None = None,
) -> str | None:  # fmt: skip
    """None when the endpoint answered 2xx, else why not (the secrets masked as ***)."""
    try:
        return _post(url, doc, timeout, headers or {})
    except Exception as e:  # noqa: BLE001 - any failure is a reason, never a crash of the sync
        why = str(getattr(e, "reason", None) or e) or type(e).__name__
        return mask(why, secrets or [])


def _post(url: str, doc: dict[str, Any], timeout: float, headers: dict[str, str]) -> str | None:
    check_webhook(url)
    u = urlsplit(url)
    host = u.hostname or ""
    port = u.port or (443 if u.scheme == "https" else 80)
    addrs = _resolve(host, port, timeout)
    for a in addrs:
        if why := forbidden_address(a):
            return f"{host} resolves to {why}; not sent"
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    conn_cls = _Pinned if u.scheme == "https" else _PinnedHTTP
    conn = conn_cls(host, addrs[0], port, timeout)
    try:
        body = json.dumps(doc).encode()
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/json", "User-Agent": "hpcflow", **headers})  # fmt: skip
        r = conn.getresponse()
        r.read(65536)
    finally:
        conn.close()
    if 200 <= r.status < 300:
        return None
    if 300 <= r.status < 400:
        return f"HTTP {r.status} {r.reason}: redirects are not followed (give the final URL)"
    return f"HTTP {r.status} {r.reason}"
