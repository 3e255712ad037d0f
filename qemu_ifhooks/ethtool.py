"""Read a device's receive offloads (GRO, LRO).

Standard library only, for the hook's hot path.  The values match the active
features that ``ethtool -k DEV`` prints as generic-receive-offload and
large-receive-offload.  Read over ethtool netlink (two requests: the family id,
then the features); kernels without it (before 5.6) get the legacy ioctl of
ethtoolioctl.py.
"""

from __future__ import annotations

import posix  # not os: see env.py

from .nlsocket import (NETLINK_GENERIC, NetlinkSocket, _attr, _attr_items, _attrs, _cstr,
                       _GENLMSGHDR, _nested)
from .record import Record

__all__ = ["Offloads", "read_offloads"]

# linux/ethtool_netlink.h
_ETHTOOL_GENL_NAME = "ethtool"
_ETHTOOL_GENL_VERSION = 1
_ETHTOOL_MSG_FEATURES_GET = 11
_ETHTOOL_A_HEADER_DEV_NAME = 2
_ETHTOOL_A_FEATURES_HEADER = 1
_ETHTOOL_A_FEATURES_ACTIVE = 4
_ETHTOOL_A_BITSET_NOMASK = 1
_ETHTOOL_A_BITSET_BITS = 3
_ETHTOOL_A_BITSET_BITS_BIT = 1
_ETHTOOL_A_BITSET_BIT_NAME = 2
_ETHTOOL_A_BITSET_BIT_VALUE = 3
_GRO, _LRO = "rx-gro", "rx-lro"  # netdev_features_strings

_IFNAMSIZ = 16


class Offloads(Record):
    __slots__ = ("gro", "lro")


def _no_device(name: bytes) -> FileNotFoundError:
    import errno  # here, not at the top: see nlsocket.py

    return FileNotFoundError(errno.ENODEV, posix.strerror(errno.ENODEV),
                             name.decode("utf-8", "surrogateescape"))


def _name_attr(name: str) -> bytes:
    """A bit's name attribute, byte for byte (ETHTOOL_A_BITSET_BIT_NAME)."""
    return _attr(_ETHTOOL_A_BITSET_BIT_NAME, name.encode() + b"\0")[:4 + len(name) + 1]


_GRO_NAME, _LRO_NAME = _name_attr(_GRO), _name_attr(_LRO)


def _offloads(bitset) -> Offloads:
    """GRO and LRO from the ACTIVE bitset of a features reply."""
    attrs = _attrs(bitset)
    if _ETHTOOL_A_BITSET_NOMASK in attrs:
        # The list form, which the kernel sends for ACTIVE: it names exactly the bits
        # that are set, so finding a name attribute is enough. Names are NUL-terminated
        # text, so no other attribute can hold those bytes (rx-gro-hw does not end in
        # "rx-gro\0"); about 30 bits parsed one by one cost a tenth of a millisecond.
        bits = bytes(attrs.get(_ETHTOOL_A_BITSET_BITS, b""))
        return Offloads(gro=_GRO_NAME in bits, lro=_LRO_NAME in bits)
    features = _active_features(bitset)
    return Offloads(gro=_GRO in features, lro=_LRO in features)


def _active_features(bitset) -> set:
    """The names of the bits set in a verbose ethtool bitset (ETHTOOL_A_BITSET_*)."""
    attrs = _attrs(bitset)
    listed_are_set = _ETHTOOL_A_BITSET_NOMASK in attrs  # a list of the set bits only
    names = set()
    for kind, bit in _attr_items(attrs.get(_ETHTOOL_A_BITSET_BITS, b"")):
        if kind == _ETHTOOL_A_BITSET_BITS_BIT:
            fields = _attrs(bit)
            if listed_are_set or _ETHTOOL_A_BITSET_BIT_VALUE in fields:
                names.add(_cstr(fields.get(_ETHTOOL_A_BITSET_BIT_NAME, b"")))
    return names


def _read_netlink(name: bytes) -> Offloads | None:
    """Over ethtool netlink; None when the kernel does not have it."""
    with NetlinkSocket(NETLINK_GENERIC) as nl:
        family = nl.genl_family(_ETHTOOL_GENL_NAME)
        if family is None:
            return None
        request = _GENLMSGHDR.pack(_ETHTOOL_MSG_FEATURES_GET, _ETHTOOL_GENL_VERSION, 0) + \
            _nested(_ETHTOOL_A_FEATURES_HEADER, _attr(_ETHTOOL_A_HEADER_DEV_NAME, name + b"\0"))
        try:
            replies = nl.request(family, request)
        except OSError as e:
            import errno  # here, not at the top: see nlsocket.py

            if e.errno == errno.ENODEV:
                raise _no_device(name) from None
            raise
    for _, _, msg in replies:
        active = _attrs(msg, _GENLMSGHDR.size).get(_ETHTOOL_A_FEATURES_ACTIVE)
        if active is not None:
            return _offloads(active)
    import errno  # here, not at the top: see nlsocket.py

    raise OSError(errno.EPROTO, f"no active features in the ethtool reply for {name!r}")


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
    offloads = _read_netlink(name)
    if offloads is None:  # a kernel before 5.6
        from .ethtoolioctl import read_ioctl

        offloads = read_ioctl(name)
    return offloads
