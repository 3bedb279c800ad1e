"""The SSRF guard's reading of hosts and addresses, on a table of tricky spellings (no network: every host here is
a literal, or `localhost`, which the system resolves from /etc/hosts)."""

from __future__ import annotations

import ipaddress

import pytest

from backend.webhooks.addresses import Refused, check_url, literal, resolve, why_not_public

NOT_PUBLIC = [
    # IPv4, every spelling inet_aton (and so the system resolver) accepts
    ("127.0.0.1", "loopback"),
    ("127.1", "loopback"),
    ("2130706433", "loopback"),  # decimal
    ("0x7f000001", "loopback"),  # hex
    ("0177.0.0.1", "loopback"),  # octal
    ("0x7f.0.0.1", "loopback"),
    ("017700000001", "loopback"),  # octal, whole
    ("0", "unspecified"),
    ("0.0.0.0", "unspecified"),
    ("10.0.0.1", "private"),
    ("012.0.0.1", "private"),  # octal 10.0.0.1
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("3232235777", "private"),  # 192.168.1.1 in decimal
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("0xa9fea9fe", "link-local"),  # the same, in hex
    ("100.64.0.1", "not globally routable"),  # carrier-grade NAT
    ("198.18.0.1", "private"),  # benchmarking
    ("192.0.2.1", "private"),  # documentation
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    # IPv6
    ("::1", "loopback"),
    ("[::1]", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fd00::1", "private"),
    ("fc00::abcd", "private"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "private"),  # documentation
    # IPv4 inside IPv6: the IPv4 address is what is reached
    ("::ffff:127.0.0.1", "loopback"),
    ("[::ffff:7f00:1]", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("2002:7f00:1::", "loopback"),  # 6to4
    ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of the metadata address
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64
    ("64:ff9b::10.0.0.1", "private"),
]

PUBLIC = ["8.8.8.8", "1.1.1.1", "134744072", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2a00:1450::1"]


@pytest.mark.parametrize(("host", "reason"), NOT_PUBLIC)
def test_not_public(host: str, reason: str) -> None:
    address = literal(host)
    assert address is not None, host
    assert (why_not_public(address) or "").startswith(reason), (host, address, why_not_public(address))


@pytest.mark.parametrize("host", PUBLIC)
def test_public(host: str) -> None:
    address = literal(host)
    assert address is not None and why_not_public(address) is None, (host, address)


def test_names_are_not_literals() -> None:
    for name in ("example.com", "localhost", "127.0.0.1.nip.io", "0x7f.example", "1.2.3.4.5"):
        assert literal(name) is None, name
    assert literal("0x7f.1") == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://2130706433/",
        "https://0177.0.0.1:8443/x",
        "https://[::ffff:127.0.0.1]/",
        "https://[::1]:443/",
        "https://169.254.169.254/latest/meta-data/",
        "https://localhost/",
        "https://[fe80::1%25eth0]/",
    ],
)
async def test_resolve_refuses_in_production(url: str) -> None:
    with pytest.raises(Refused):
        await resolve(url, allow_private=False)


async def test_resolve_gives_the_address_to_connect_to() -> None:
    target = await resolve("https://8.8.8.8:8443/hook", allow_private=False)
    assert target.address == ipaddress.IPv4Address("8.8.8.8") and target.host == "8.8.8.8"
    local = await resolve("http://localhost:9/hook", allow_private=True)
    assert local.address.is_loopback


@pytest.mark.parametrize(
    ("url", "allow_private"),
    [
        ("http://example.com/", False),
        ("ftp://example.com/", True),
        ("https://user:secret@example.com/", True),
        ("https:///nohost", True),
        ("file:///etc/passwd", True),
    ],
)
def test_refused_urls(url: str, allow_private: bool) -> None:
    with pytest.raises(Refused):
        check_url(url, allow_private=allow_private)


def test_plain_http_only_where_private_is_allowed() -> None:
    assert check_url("http://127.0.0.1:8080/x", allow_private=True).port == 8080
