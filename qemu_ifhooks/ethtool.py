"""Read a device's receive offloads (GRO, LRO) with the legacy ethtool ioctl.

Standard library only, for the hook's hot path.  The values match the active
features that ``ethtool -k DEV`` prints as generic-receive-offload and
large-receive-offload.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass

__all__ = ["Offloads", "read_offloads"]

_SIOCETHTOOL = 0x8946
_ETHTOOL_GFLAGS = 0x25
_ETHTOOL_GGRO = 0x2B
_ETH_FLAG_LRO = 1 << 15
_IFNAMSIZ = 16
_IFREQ_SIZE = 40  # struct ifreq on LP64; the kernel copies no more than its own size
_IFREQ = struct.Struct(f"{_IFNAMSIZ}sP")  # ifr_name, ifr_data


@dataclass(frozen=True)
class Offloads:
    gro: bool
    lro: bool


def _socket() -> socket.socket:
    # Any socket reaches dev_ioctl(); AF_INET is the usual one, the others
    # cover kernels built without IPv4.
    last = None
    for family, kind in (
        (socket.AF_INET, socket.SOCK_DGRAM),
        (socket.AF_NETLINK, socket.SOCK_RAW),
        (socket.AF_UNIX, socket.SOCK_DGRAM),
    ):
        try:
            return socket.socket(family, kind | socket.SOCK_CLOEXEC)
        except OSError as e:
            last = e
    raise last


def _get(sock: socket.socket, name: bytes, cmd: int) -> int | None:
    """ethtool_value.data for `cmd`, or None when the device does not support it."""
    value = array.array("I", (cmd, 0))  # struct ethtool_value {u32 cmd; u32 data}
    ifreq = _IFREQ.pack(name, value.buffer_info()[0]).ljust(_IFREQ_SIZE, b"\0")
    try:
        fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            return None
        if e.errno == errno.ENODEV:
            raise FileNotFoundError(e.errno, os.strerror(e.errno), name.decode("utf-8", "surrogateescape")) from None
        raise
    return value[1]


def read_offloads(ifname: str) -> Offloads:
    """GRO and LRO state of `ifname` in the caller's network namespace.

    Raises FileNotFoundError (errno ENODEV) when there is no such device.  As
    root, a missing name also makes the kernel try ``modprobe netdev-NAME``
    first, so callers on a hot path should check the device exists beforehand.
    """
    name = ifname.encode("utf-8", "surrogateescape")
    # A longer name would be silently truncated by the kernel and could hit
    # another device.
    if not name or len(name) >= _IFNAMSIZ or b"\0" in name:
        raise ValueError(f"invalid interface name: {ifname!r}")
    with _socket() as sock:
        # EOPNOTSUPP only comes from old kernels whose driver lacked the
        # get_flags/get_gro hooks; such a device cannot do the offload, so
        # report it as off (ethtool -k shows it "off [fixed]" too).
        gro = _get(sock, name, _ETHTOOL_GGRO)
        flags = _get(sock, name, _ETHTOOL_GFLAGS)
    return Offloads(gro=bool(gro), lro=bool((flags or 0) & _ETH_FLAG_LRO))
