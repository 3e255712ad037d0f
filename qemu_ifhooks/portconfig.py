"""The `[port."NAME"]` tables of the config: what one guest's TAP may send as.

    [port."web1-*"]              # a TAP name (QEMU's ifname=, libvirt's <target dev=>) or a glob
    mac = "52:54:00:12:34:56"    # else the NIC's mac= in the calling QEMU's command line
    ipv4 = ["192.0.2.10"]        # addresses or prefixes
    ipv6 = ["2001:db8::10/128"]

Addresses are checked with inet_pton (the C library, no import of `ipaddress` on
the hook's path) and kept as (packed address, prefix length).
"""

from __future__ import annotations

import _socket

from .configmodel import Port

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Sequence, Tuple

    Prefix = Tuple[bytes, int]


class Invalid(Exception):
    """A value that does not fit; carries what was expected."""


def parse_mac(text: Any) -> bytes:
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                  for p in parts):
        raise Invalid('a MAC address such as "52:54:00:12:34:56"')
    mac = bytes(int(p, 16) for p in parts)
    if mac[0] & 1 or mac == bytes(6):
        raise Invalid("a unicast MAC address (a guest's own)")
    return mac


def _prefixes(family: int, bits: int, name: str) -> Callable[[Any], Tuple[Prefix, ...]]:
    def check(value: Any) -> Tuple[Prefix, ...]:
        if not isinstance(value, list):
            raise Invalid(f"a list of {name} addresses or prefixes")
        out = []
        for item in value:
            address, _, length = item.partition("/") if isinstance(item, str) else ("", "", "")
            try:
                packed = _socket.inet_pton(family, address)
            except (OSError, ValueError):
                raise Invalid(f"a list of {name} addresses or prefixes") from None
            if length and not (length.isascii() and length.isdigit() and int(length) <= bits):
                raise Invalid(f"a list of {name} addresses or prefixes (prefix length 0..{bits})")
            prefix = int(length) if length else bits
            if masked(packed, prefix) != packed:
                raise Invalid(f"{name} prefixes without host bits set (got {item})")
            out.append((packed, prefix))
        return tuple(out)
    return check


KEYS = {
    "mac": parse_mac,
    "ipv4": _prefixes(_socket.AF_INET, 32, "IPv4"),
    "ipv6": _prefixes(_socket.AF_INET6, 128, "IPv6"),
}


def masked(packed: bytes, prefix: int) -> bytes:
    number = int.from_bytes(packed, "big")
    bits = len(packed) * 8
    mask = ((1 << prefix) - 1) << (bits - prefix) if prefix else 0
    return (number & mask).to_bytes(len(packed), "big")


def prefix_text(prefix: Prefix) -> str:
    packed, length = prefix
    family = _socket.AF_INET if len(packed) == 4 else _socket.AF_INET6
    text = _socket.inet_ntop(family, packed)
    return text if length == len(packed) * 8 else f"{text}/{length}"


def port_for(ports: Sequence[Port], tap: str) -> Optional[Port]:
    """The TAP's table: the one named exactly after it, else the first whose glob fits."""
    for port in ports:
        if port.pattern == tap:
            return port
    globs = [port for port in ports if any(c in port.pattern for c in "*?[")]
    if globs:
        from fnmatch import fnmatchcase  # only globs need it

        for port in globs:
            if fnmatchcase(tap, port.pattern):
                return port
    return None
