"""This machine's loopback: which addresses and names only local programs can reach.

A server on a loopback address answers without a token (the model server, the gateway's
predictions, a dashboard without one): only programs on this machine reach it. Except a
web page: a site whose name its DNS turns into 127.0.0.1 (DNS rebinding) is, for the
browser, the same origin as the local server, so its script can send requests and read
the answers. The one trace of that is the request's ``Host`` header, which names the
site. So a server bound to loopback answers only requests whose ``Host`` is a loopback
name or address (as MLflow's server, Jupyter and Starlette's TrustedHostMiddleware do).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

REFUSAL = (
    "this server is bound to a loopback address: it answers requests to localhost or a "
    "loopback address only (the Host header named another), so that no web page can reach "
    "it through DNS rebinding; to be reached by another name, list it in [http] "
    "allowed_hosts (a reverse proxy's site name) or serve on a routable address "
    "(e.g. --host 0.0.0.0)"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a name, IPv6 in brackets or not) is this
    machine's loopback: ``localhost``, 127.0.0.0/8 or ::1. Any other name is not
    provably local, whatever it resolves to now."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(value: bytes) -> str | None:
    """The name in a ``Host`` header (``name[:port]``, ``[v6][:port]``), lower case;
    None when it is not one (a port that is not digits, an unclosed ``[``)."""
    name, port = value.decode("latin-1"), ""
    if name.startswith("["):  # [v6] or [v6]:port
        end = name.find("]")
        rest = name[end + 1 :] if end > 0 else "no ]"
        if rest and not rest.startswith(":"):
            return None
        name, port = name[1:end], rest[1:]
    elif name.count(":") == 1:
        name, port = name.split(":")
    if port and not (port.isascii() and port.isdigit()):
        return None
    return name.lower()


class LoopbackHosts:
    """The ``Host`` values a loopback-bound server admits: loopback names and addresses,
    and the names in ``allowed`` (``[http] allowed_hosts``: a reverse proxy's site name
    on this machine, say; ``*`` admits every name). The ones seen are remembered (at most
    64), so a request pays one set lookup."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = frozenset(a.lower().strip("[]") for a in allowed)
        self._seen: set[bytes] = set()

    def admits(self, host: bytes | None) -> bool:
        if host in self._seen or "*" in self.allowed:
            return True
        if host is None:
            return True
        name = host_name(host)
        if name is None or not (is_loopback(name) or name in self.allowed):
            return False
        if len(self._seen) < 64:
            self._seen.add(host)
        return True
