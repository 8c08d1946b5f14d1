"""Secrets stay out of output: how a camera URL or a webhook URL may be shown.

A stream URL often carries a password (`rtsp://user:pass@host/...`) or a token in its query;
a webhook URL often is the secret itself (Slack, Teams and most chat hooks put it in the path).
Every event, log line, page and error message shows URLs through these two functions only.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def source(spec: str) -> str:
    """A source as it may be shown: credentials and query values masked
    (`rtsp://***@cam.local/live?token=***`); a camera index or a file path as it is."""
    if "://" not in spec:
        return spec
    try:
        parts = urlsplit(spec)
        host = parts.hostname or ""
    except ValueError:
        return MASK
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = (f"{MASK}@" if parts.username or parts.password else "") + host
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc += f":{port}" if port else ""
    query = "&".join(
        f"{pair.split('=', 1)[0]}={MASK}" if "=" in pair else pair
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def endpoint(url: str) -> str:
    """A webhook URL as it may be shown: its scheme and host only (`https://hooks.example/***`)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    return f"{parts.scheme}://{host}{port}/{MASK}"


def text(message: str) -> str:
    """A message (an error from OpenCV or the network, say) with every URL in it shown as
    `source` shows it."""
    return _URL.sub(lambda m: source(m.group(0)), message)
