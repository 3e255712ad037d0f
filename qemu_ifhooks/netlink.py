"""Minimal rtnetlink (NETLINK_ROUTE) client for the hook's hot path.

Standard library only: QEMU runs the hook on every VM start, so importing a
full netlink library would cost more than the work itself.  One socket, one
request per operation, and only the attributes ``Link`` needs are decoded.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

__all__ = ["IFF_UP", "IFF_LOWER_UP", "IFF_RUNNING", "Link", "Netlink"]

# ifi_flags (linux/if.h)
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_LOWER_UP = 0x10000

# netlink header (linux/netlink.h)
_NLMSG_NOOP = 1
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLMSG_OVERRUN = 4
_NLM_F_REQUEST = 0x1
_NLM_F_MULTI = 0x2
_NLM_F_ACK = 0x4
_NLM_F_DUMP_INTR = 0x10
_NLM_F_DUMP = 0x300
_NLM_F_EXCL = 0x200
_NLM_F_CREATE = 0x400
_NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR: extended-ack attributes follow
_NLM_F_CAPPED = 0x100  # on NLMSG_ERROR: the request is not echoed back
_NLMSGERR_ATTR_MSG = 1
_NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = 0x3FFF
_SOL_NETLINK = 270
_NETLINK_CAP_ACK = 10
_NETLINK_EXT_ACK = 11
_NETLINK_GET_STRICT_CHK = 12

# rtnetlink (linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h)
_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_RTM_GETLINK = 18
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_IFLA_ADDRESS = 1
_IFLA_IFNAME = 3
_IFLA_MTU = 4
_IFLA_MASTER = 10
_IFLA_OPERSTATE = 16
_IFLA_LINKINFO = 18
_IFLA_EXT_MASK = 29
_IFLA_INFO_KIND = 1
_IFLA_INFO_DATA = 2
_IFLA_TUN_TYPE = 3
_IFLA_BR_FORWARD_DELAY = 1
_IFLA_BR_STP_STATE = 5
_RTEXT_FILTER_SKIP_STATS = 1 << 3
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_RT_SCOPE_UNIVERSE = 0
_ARPHRD_ETHER = 1
_TUN_TYPE_NAMES = {1: "tun", 2: "tap"}  # IFF_TUN, IFF_TAP
_IFNAMSIZ = 16
_USER_HZ = 100  # the bridge speaks clock_t (1/100 s), whatever the kernel HZ

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_NLATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")

_RECV_BUF = 64 * 1024


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str | None  # IFLA_INFO_KIND; None for links without rtnl_link_ops (lo, NICs)
    tun_type: str | None  # "tap" or "tun" when kind == "tun", else None
    flags: int
    mtu: int
    master: int  # 0 when none
    address: bytes | None
    operstate: int  # IF_OPER_* (6 = up)

    @property
    def is_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def is_tap(self) -> bool:
        return self.kind == "tun" and self.tun_type == "tap"


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    n = _NLATTR.size + len(payload)
    return _NLATTR.pack(n, kind) + payload + b"\0" * (_align(n) - n)


def _nested(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | _NLA_F_NESTED, b"".join(attrs))


def _u32_attr(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _attrs(data, offset: int = 0) -> dict:
    """Attributes of one level as {type: memoryview}; later duplicates win."""
    out = {}
    end = len(data)
    while offset + 4 <= end:
        n, kind = _NLATTR.unpack_from(data, offset)
        if n < 4 or offset + n > end:
            break
        out[kind & _NLA_TYPE_MASK] = data[offset + 4 : offset + n]
        offset += _align(n)
    return out


def _cstr(view) -> str:
    return bytes(view).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _ifname(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    # The kernel would refuse (ERANGE) or, for ioctls, truncate such names.
    if not raw or len(raw) >= _IFNAMSIZ or b"\0" in raw:
        raise ValueError(f"invalid interface name: {name!r}")
    return raw + b"\0"


def _parse_link(msg) -> Link:
    _, ifi_type, index, flags, _ = _IFINFOMSG.unpack_from(msg, 0)
    at = _attrs(msg, _IFINFOMSG.size)
    kind = tun_type = None
    info = at.get(_IFLA_LINKINFO)
    if info is not None:
        info_at = _attrs(info)
        if _IFLA_INFO_KIND in info_at:
            kind = _cstr(info_at[_IFLA_INFO_KIND])
        if kind == "tun":
            data = info_at.get(_IFLA_INFO_DATA)
            raw = _attrs(data).get(_IFLA_TUN_TYPE) if data is not None else None
            if raw is not None and len(raw) >= 1:
                tun_type = _TUN_TYPE_NAMES.get(raw[0])
            if tun_type is None:  # kernels before 4.15 have no tun fill_info
                tun_type = "tap" if ifi_type == _ARPHRD_ETHER else "tun"
    mtu = at.get(_IFLA_MTU)
    master = at.get(_IFLA_MASTER)
    oper = at.get(_IFLA_OPERSTATE)
    addr = at.get(_IFLA_ADDRESS)
    return Link(
        index=index,
        name=_cstr(at[_IFLA_IFNAME]) if _IFLA_IFNAME in at else "",
        kind=kind,
        tun_type=tun_type,
        flags=flags,
        mtu=_U32.unpack(mtu)[0] if mtu is not None else 0,
        master=_U32.unpack(master)[0] if master is not None else 0,
        address=bytes(addr) if addr is not None else None,
        operstate=oper[0] if oper is not None and len(oper) else 0,
    )


def _raise_nlerror(err: int, msg: str | None) -> None:
    exc = OSError(err, os.strerror(err))  # picks PermissionError, FileExistsError, ...
    exc.extack = msg  # kernel's explanation, when it gave one
    raise exc


class Netlink:
    """One NETLINK_ROUTE socket; use as a context manager (closes the socket)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        try:
            self._sock.bind((0, 0))
            self._pid = self._sock.getsockname()[0]
        except BaseException:
            self._sock.close()
            raise
        # All optional: they only make replies smaller or errors clearer.
        # Strict checking lets the kernel filter address dumps by ifindex.
        for opt in (_NETLINK_CAP_ACK, _NETLINK_EXT_ACK, _NETLINK_GET_STRICT_CHK):
            try:
                self._sock.setsockopt(_SOL_NETLINK, opt, 1)
            except OSError:
                pass
        self._seq = 0
        self._buf = bytearray(_RECV_BUF)
        self._ext_mask = True
        self._intr = False

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ---------------------------------------------------------

    def _send(self, msg_type: int, flags: int, payload: bytes) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        hdr = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type, _NLM_F_REQUEST | flags, self._seq, 0)
        self._sock.sendto(hdr + payload, (0, 0))
        return self._seq

    def _recv(self) -> memoryview:
        # Peek first so a datagram bigger than the buffer is never cut short.
        n = self._sock.recv_into(self._buf, len(self._buf), socket.MSG_PEEK | socket.MSG_TRUNC)
        if n > len(self._buf):
            self._buf = bytearray(n)
        n = self._sock.recv_into(self._buf, len(self._buf))
        return memoryview(self._buf)[:n]

    def _messages(self, seq: int):
        """Yield (type, flags, payload) of replies to `seq` until its end.

        The end is the first non-multipart reply, NLMSG_DONE, or an ack.
        Negative errors are raised; stale replies to earlier requests are skipped.
        """
        while True:
            data = self._recv()
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, mtype, flags, mseq, mpid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size or offset + length > len(data):
                    raise OSError(errno.EPROTO, "truncated netlink message")
                payload = bytes(data[offset + _NLMSGHDR.size : offset + length])
                offset += _align(length)
                if mseq != seq or mpid != self._pid:
                    continue
                if flags & _NLM_F_DUMP_INTR:
                    self._intr = True
                if mtype == _NLMSG_ERROR:
                    err = -_I32.unpack_from(payload, 0)[0]
                    if err:
                        _raise_nlerror(err, self._extack(payload, flags))
                    return  # ack
                if mtype == _NLMSG_DONE:
                    if len(payload) >= 4 and _I32.unpack_from(payload, 0)[0] < 0:
                        _raise_nlerror(-_I32.unpack_from(payload, 0)[0], None)
                    return
                if mtype == _NLMSG_OVERRUN:
                    raise OSError(errno.ENOBUFS, "netlink overrun")
                if mtype == _NLMSG_NOOP:
                    continue
                yield mtype, flags, payload
                if not flags & _NLM_F_MULTI:
                    return

    @staticmethod
    def _extack(payload: bytes, flags: int) -> str | None:
        if not flags & _NLM_F_ACK_TLVS:
            return None
        # struct nlmsgerr: error, then the request's header (and body unless capped)
        offset = 4 + _NLMSGHDR.size
        if not flags & _NLM_F_CAPPED:
            offset = 4 + _align(_NLMSGHDR.unpack_from(payload, 4)[0])
        msg = _attrs(payload, offset).get(_NLMSGERR_ATTR_MSG)
        return _cstr(msg) if msg is not None else None

    def _request(self, msg_type: int, flags: int, payload: bytes) -> list:
        seq = self._send(msg_type, flags, payload)
        return list(self._messages(seq))

    def _dump(self, msg_type: int, payload: bytes) -> list:
        # A dump interrupted by concurrent changes is flagged; take a fresh one.
        for _ in range(5):
            self._intr = False
            replies = self._request(msg_type, _NLM_F_DUMP, payload)
            if not self._intr:
                break
        return replies

    def _ack(self, msg_type: int, flags: int, payload: bytes) -> None:
        self._request(msg_type, flags | _NLM_F_ACK, payload)

    # -- links -------------------------------------------------------------

    def _ext_mask_attr(self) -> bytes:
        return _u32_attr(_IFLA_EXT_MASK, _RTEXT_FILTER_SKIP_STATS) if self._ext_mask else b""

    def _get_link(self, index: int, extra: bytes) -> Link | None:
        while True:
            payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + extra + self._ext_mask_attr()
            try:
                replies = self._request(_RTM_GETLINK, 0, payload)
            except OSError as e:
                if e.errno == errno.ENODEV:
                    return None
                if e.errno == errno.EINVAL and self._ext_mask:
                    self._ext_mask = False  # very old kernel: retry without it
                    continue
                raise
            for mtype, _, msg in replies:
                if mtype == _RTM_NEWLINK:
                    return _parse_link(msg)
            return None

    def get_link(self, name: str) -> Link | None:
        return self._get_link(0, _attr(_IFLA_IFNAME, _ifname(name)))

    def get_link_by_index(self, index: int) -> Link | None:
        if index <= 0:
            raise ValueError(f"invalid interface index: {index}")
        return self._get_link(index, b"")

    def list_links(self, master: int | None = None) -> list[Link]:
        payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + self._ext_mask_attr()
        if master:
            payload += _u32_attr(_IFLA_MASTER, master)
        links = [_parse_link(m) for t, _, m in self._dump(_RTM_GETLINK, payload) if t == _RTM_NEWLINK]
        if master is not None:
            # Kernels before 4.4 ignore the filter, and 0 ("no master") is never filtered.
            links = [link for link in links if link.master == master]
        return links

    def create_bridge(
        self, name: str, *, address: bytes | None = None, stp: bool = False, forward_delay: int = 0
    ) -> None:
        """Create a bridge, left down.  forward_delay is in seconds."""
        if forward_delay < 0:
            raise ValueError(f"negative forward_delay: {forward_delay}")
        attrs = [_attr(_IFLA_IFNAME, _ifname(name))]
        if address is not None:
            attrs.append(_attr(_IFLA_ADDRESS, bytes(address)))
        # The kernel applies FORWARD_DELAY before STP_STATE, so a delay outside the
        # STP range (2..30 s) is accepted here and then clamped when STP starts.
        data = _nested(
            _IFLA_INFO_DATA,
            _u32_attr(_IFLA_BR_FORWARD_DELAY, round(forward_delay * _USER_HZ)),
            _u32_attr(_IFLA_BR_STP_STATE, 1 if stp else 0),
        )
        attrs.append(_nested(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, b"bridge"), data))
        payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(attrs)
        self._ack(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, payload)

    def set_link(
        self,
        index: int,
        *,
        master: int | None = None,
        mtu: int | None = None,
        up: bool | None = None,
        address: bytes | None = None,
    ) -> None:
        """Change only the given fields; master=0 detaches from the current master."""
        if index <= 0:
            raise ValueError(f"invalid interface index: {index}")
        flags = change = 0
        if up is not None:
            flags, change = (IFF_UP if up else 0), IFF_UP
        attrs = []
        if address is not None:
            attrs.append(_attr(_IFLA_ADDRESS, bytes(address)))
        if mtu is not None:
            attrs.append(_u32_attr(_IFLA_MTU, mtu))
        if master is not None:
            attrs.append(_u32_attr(_IFLA_MASTER, master))
        payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change) + b"".join(attrs)
        self._ack(_RTM_NEWLINK, 0, payload)

    def delete_link(self, index: int) -> None:
        if index <= 0:
            raise ValueError(f"invalid interface index: {index}")
        self._ack(_RTM_DELLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    # -- addresses ---------------------------------------------------------

    def global_addresses(self, index: int) -> list[str]:
        """Universe-scope addresses of one link as "addr/prefixlen" text."""
        # With strict checking the kernel filters by ifa_index; otherwise it is ignored.
        payload = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, index)
        try:
            replies = self._dump(_RTM_GETADDR, payload)
        except OSError as e:
            if e.errno == errno.ENODEV:  # strict kernels refuse an unknown index
                return []
            raise
        out = []
        for mtype, _, msg in replies:
            if mtype != _RTM_NEWADDR:
                continue
            family, prefixlen, _, scope, ifindex = _IFADDRMSG.unpack_from(msg, 0)
            if ifindex != index or scope != _RT_SCOPE_UNIVERSE:
                continue
            at = _attrs(msg, _IFADDRMSG.size)
            # IFA_LOCAL is the own address on point-to-point links, where
            # IFA_ADDRESS is the peer; IPv6 usually sends IFA_ADDRESS only.
            raw = at.get(_IFA_LOCAL, at.get(_IFA_ADDRESS))
            if raw is None or family not in (socket.AF_INET, socket.AF_INET6):
                continue
            out.append(f"{socket.inet_ntop(family, bytes(raw))}/{prefixlen}")
        return out
