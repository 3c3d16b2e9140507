"""Which names in `Host` and `Origin` mean this server, without Quart: security.py's rules
use these, and so does the early app (early.py), which answers before Quart is imported.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from trio_openhands.settings import LOOPBACK_HOSTS

if TYPE_CHECKING:
    from trio_openhands.settings import Settings


def is_loopback_name(hostname: str) -> bool:
    """localhost, *.localhost and 127.x.y.z."""
    return (
        hostname in LOOPBACK_HOSTS
        or hostname.endswith(".localhost")  # RFC 6761: browsers resolve these to loopback
        or re.fullmatch(r"127\.\d{1,3}\.\d{1,3}\.\d{1,3}", hostname) is not None
    )


def host_is_allowed(host_header: str, settings: Settings) -> bool:
    """Whether `Host` names this server: see security.py (DNS rebinding)."""
    if not host_header or "*" in settings.allowed_hosts:
        return True
    if not settings.binds_loopback and not settings.allowed_hosts:
        return True
    try:
        hostname = urlsplit("//" + host_header).hostname
    except ValueError:
        return False
    if hostname is None:
        return False
    if settings.binds_loopback and is_loopback_name(hostname):
        return True
    return hostname in {allowed.lower() for allowed in settings.allowed_hosts}
