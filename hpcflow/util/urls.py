"""Which URLs hpcflow may send to (docs/notify.md, docs/security.md): a webhook is https
(plain http only to loopback), carries no credentials, and never goes to a cloud metadata
service or a link-local address, by name or by the address its name resolves to."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, urlsplit

# cloud metadata services: never a webhook, by name or by address (link-local is refused too)
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog",
                            "instance-data", "instance-data.ec2.internal"})  # fmt: skip
METADATA_IPS = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)
_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def is_loopback_host(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def forbidden_address(addr: str) -> str | None:
    """Why a webhook may not go to this IP address (None: it may)."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None
    if ip in METADATA_IPS:
        return f"{addr} is a cloud metadata address"
    if ip.is_link_local:
        return f"{addr} is link-local (cloud metadata lives there)"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return f"{addr} is not a unicast address"
    return None


def check_webhook(url: str) -> str:
    """A webhook URL hpcflow may POST to: https (http only to loopback), no credentials,
    no metadata or link-local host, ``{secret}`` never in the host part."""
    if _CONTROL.search(url):
        raise ValueError("webhook must not contain spaces or control characters")
    u = urlsplit(url)
    try:
        host = u.hostname
        u.port  # noqa: B018 - a bad port raises here
    except ValueError as e:
        raise ValueError(f"webhook {url!r}: {e}") from e
    if u.scheme not in ("http", "https") or not host:
        raise ValueError("webhook must be an https:// URL")
    if "{" in u.netloc or "}" in u.netloc:
        raise ValueError(
            "webhook: {secret} may stand in the path or the query, never in the host part"
        )
    if u.username is not None or u.password is not None:
        raise ValueError(
            "webhook must not carry credentials: put them in secret_env or secret_file "
            "(in your ~/.config/hpcflow/notify.yaml) and write {secret} where they go"
        )
    if u.scheme == "http" and not is_loopback_host(host):
        raise ValueError(f"webhook {url!r}: use https:// (plain http only to loopback)")
    if host.lower().rstrip(".") in METADATA_NAMES:
        raise ValueError(f"webhook host {host!r} is a cloud metadata service")
    try:
        why = forbidden_address(host)
    except ValueError:
        why = None  # a name: its addresses are checked when it is resolved, at delivery
    if why:
        raise ValueError(f"webhook: {why}")
    return url


def mask(text: str, secrets: list[str]) -> str:
    """``text`` with each secret, as written and as a URL would carry it, masked as ***."""
    for s in secrets:
        if s:
            forms = {s, quote(s, safe=""), quote(s), quote(s, safe="/"), quote(s, safe="/:"),
                     repr(s)[1:-1], repr(s.encode())[2:-1]}  # fmt: skip
            for form in sorted(forms, key=len, reverse=True):
                text = text.replace(form, "***")
    return text
