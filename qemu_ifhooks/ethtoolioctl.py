"""GRO and LRO over the legacy ethtool ioctl (SIOCETHTOOL), for kernels without ethtool
netlink (before 5.6); see ethtool.py. Its buffer needs `array`, an import that costs
more than the rest of the hook, so only such kernels load this.
"""

from __future__ import annotations

import _struct as struct  # see nlsocket.py

from .ethtool import Offloads, _no_device

# linux/sockios.h, linux/ethtool.h
_SIOCETHTOOL = 0x8946
_ETHTOOL_GFLAGS = 0x25
_ETHTOOL_GGRO = 0x2B
_ETH_FLAG_LRO = 1 << 15
_IFNAMSIZ = 16
_IFREQ_SIZE = 40  # struct ifreq on LP64; the kernel copies no more than its own size
_IFREQ = struct.Struct(f"{_IFNAMSIZ}sP")  # ifr_name, ifr_data


def read_ioctl(name: bytes) -> Offloads:
    import errno
    import fcntl

    import _socket

    # Any socket reaches dev_ioctl(); AF_INET is the usual one, the others
    # cover kernels built without IPv4.
    last = None
    for family, kind in ((_socket.AF_INET, _socket.SOCK_DGRAM),
                         (_socket.AF_NETLINK, _socket.SOCK_RAW),
                         (_socket.AF_UNIX, _socket.SOCK_DGRAM)):
        try:
            sock = _socket.socket(family, kind | _socket.SOCK_CLOEXEC)
            break
        except OSError as e:
            last = e
    else:
        raise last  # type: ignore[misc]

    def get(cmd: int) -> int | None:
        """ethtool_value.data for `cmd`, or None when the device does not support it."""
        import array

        value = array.array("I", (cmd, 0))  # struct ethtool_value {u32 cmd; u32 data}
        ifreq = _IFREQ.pack(name, value.buffer_info()[0]).ljust(_IFREQ_SIZE, b"\0")
        try:
            fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
        except OSError as e:
            if e.errno == errno.EOPNOTSUPP:
                return None
            if e.errno == errno.ENODEV:
                raise _no_device(name) from None
            raise
        return value[1]

    try:
        # EOPNOTSUPP only comes from old kernels whose driver lacked the
        # get_flags/get_gro hooks; such a device cannot do the offload, so
        # report it as off (ethtool -k shows it "off [fixed]" too).
        gro = get(_ETHTOOL_GGRO)
        flags = get(_ETHTOOL_GFLAGS)
    finally:
        sock.close()
    return Offloads(gro=bool(gro), lro=bool((flags or 0) & _ETH_FLAG_LRO))
