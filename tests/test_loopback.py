"""Which Host names a loopback-bound server admits (the model server, the gateway and the
dashboard share the rule): DNS rebinding sends the attacker's own name."""

import pytest

from shipml.loopback import LoopbackHosts, is_loopback


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("localhost", True),
        ("LocalHost", True),  # names are case-insensitive
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),  # every interface
        ("::", False),
        ("192.168.1.5", False),
        ("localhost.attacker.example", False),
        ("127.0.0.1.nip.io", False),  # resolves to 127.0.0.1, a name all the same
        ("", False),
    ],
)
def test_loopback_addresses_and_names(host: str, local: bool) -> None:
    assert is_loopback(host) is local


@pytest.mark.parametrize(
    ("header", "local"),
    [
        (None, True),  # no Host: not a browser (browsers always send one)
        (b"127.0.0.1:8080", True),
        (b"localhost:8080", True),
        (b"localhost", True),
        (b"[::1]:8080", True),
        (b"[::1]", True),
        (b"::1", True),
        (b"rebind.attacker.example:8080", False),
        (b"127.0.0.1.nip.io:8080", False),
        (b"127.0.0.1:8080@evil", False),
        (b"[::1", False),
        (b"[::1]x", False),
        (b"[::1]:80x", False),
        (b"localhost:", True),  # an empty port is allowed (RFC 3986)
        (b"", False),
        (b"\xff\xfe", False),
    ],
)
def test_host_headers(header: bytes | None, local: bool) -> None:
    assert LoopbackHosts().admits(header) is local


def test_admitted_hosts_are_remembered_up_to_a_bound() -> None:
    hosts = LoopbackHosts()
    for port in range(200):  # a local flood of distinct loopback names
        assert hosts.admits(b"127.0.0.1:%d" % port)
    assert len(hosts._seen) == 64
    assert not hosts.admits(b"evil.example")
    assert b"evil.example" not in hosts._seen


def test_names_a_local_reverse_proxy_gives_are_admitted_when_listed() -> None:
    """[http] allowed_hosts: nginx on this machine passes its site's name to a server on
    127.0.0.1; without the name listed it is refused as a rebinding page would be."""
    listed = LoopbackHosts(["Models.Acme.test", "[fd00::5]"])
    assert listed.admits(b"models.acme.test:443") and listed.admits(b"MODELS.ACME.TEST")
    assert listed.admits(b"[fd00::5]:8080")
    assert not listed.admits(b"models.acme.test.evil.example")
    assert not LoopbackHosts().admits(b"models.acme.test")
    anything = LoopbackHosts(["*"])
    assert anything.admits(b"rebind.evil.example") and anything.admits(b"\xff")
