"""POST a JSON document (stdlib urllib), bounded in time, with the secret kept out of any
message it returns."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def post_json(
    url: str, doc: dict[str, Any], timeout: float, headers: dict[str, str] | None = None,
    secret: str | None = None,
) -> str | None:  # fmt: skip
    """None when the endpoint answered 2xx, else why not (the secret masked as ***)."""
    body = json.dumps(doc).encode()
    req = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "hpcflow", **(headers or {})},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - http(s) only
            if 200 <= r.status < 300:
                return None
            why = f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        why = f"HTTP {e.code} {e.reason}"
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
        why = str(getattr(e, "reason", e)) or type(e).__name__
    return why.replace(secret, "***") if secret else why
