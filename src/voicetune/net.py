"""Network facts shared by the faces that listen (the studio and the speech server)."""

from __future__ import annotations

import ipaddress

LOCAL_HOSTS = {"localhost"}


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps a server reachable from this machine only."""
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
