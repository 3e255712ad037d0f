"""Netlink transport for every family the project speaks: one socket, requests,
dumps, acks and batches, and the attribute codec they share (rtnetlink in
netlink.py, generic netlink for ethtool, nf_tables in nftables.py).

Standard library only, and not even `socket`: QEMU runs the hook on every VM
start, so importing a full netlink library would cost more than the work itself.
"""

from __future__ import annotations

import posix  # os re-exports it; the hook path does without importing os

import _struct as struct  # struct.py only re-exports it: one module fewer per hook

# The C module itself: `socket` would add enum, selectors and collections to every
# hook start (about 2.5 ms) for nothing the hook uses.
import _socket as socket

# errno is imported where an error is handled, not here: a hook that succeeds
# handles none, and initialising the module would cost it 0.08 ms.

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

NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12
NETLINK_GENERIC = 16
# generic netlink controller (linux/genetlink.h)
_GENL_ID_CTRL = 0x10
_CTRL_CMD_GETFAMILY = 3
_CTRL_ATTR_FAMILY_ID = 1
_CTRL_ATTR_FAMILY_NAME = 2

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_GENLMSGHDR = struct.Struct("=BBH")  # cmd, version, reserved
_NLATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_U16 = struct.Struct("=H")
_I32 = struct.Struct("=i")

# Holds any reply a hook gets (a link: 1.5 KiB; ethtool's features: 4.4 KiB); a larger
# datagram (a dump) grows it (_recv peeks first). Each KiB of a new buffer costs its
# page faults: 64 KiB took 50 us of every socket a hook opens.
_RECV_BUF = 16 * 1024


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    n = _NLATTR.size + len(payload)
    return _NLATTR.pack(n, kind) + payload + b"\0" * (_align(n) - n)


def _nested(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | _NLA_F_NESTED, b"".join(attrs))


def _u32_attr(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _u16_attr(kind: int, value: int) -> bytes:
    return _attr(kind, _U16.pack(value))


def _attr_items(data, offset: int = 0):
    """Attributes of one level as (type, memoryview) in order, duplicates kept."""
    end = len(data)
    while offset + 4 <= end:
        n, kind = _NLATTR.unpack_from(data, offset)
        if n < 4 or offset + n > end:
            break
        yield kind & _NLA_TYPE_MASK, data[offset + 4 : offset + n]
        offset += _align(n)


def _attrs(data, offset: int = 0) -> dict:
    """Attributes of one level as {type: memoryview}; later duplicates win."""
    out = {}
    end = len(data)
    while offset + 4 <= end:
        n, kind = _NLATTR.unpack_from(data, offset)
        if n < 4 or offset + n > end:
            break
        out[kind & _NLA_TYPE_MASK] = data[offset + 4 : offset + n]
        offset += (n + 3) & ~3  # _align, inline: a link has some 40 attributes
    return out


def _cstr(view) -> str:
    return bytes(view).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")




def _raise_nlerror(err: int, msg: str | None) -> None:
    exc = OSError(err, posix.strerror(err))  # picks PermissionError, FileExistsError, ...
    exc.extack = msg  # kernel's explanation, when it gave one
    raise exc



def _split(data):
    """The messages of one datagram as (type, flags, seq, pid, payload)."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, mtype, flags, mseq, mpid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            import errno

            raise OSError(errno.EPROTO, "truncated netlink message")
        yield mtype, flags, mseq, mpid, bytes(data[offset + _NLMSGHDR.size : offset + length])
        offset += _align(length)


class NetlinkSocket:
    """One netlink socket of `protocol` (NETLINK_ROUTE, NETLINK_GENERIC,
    NETLINK_NETFILTER); use as a context manager (closes the socket)."""

    def __init__(self, protocol: int = NETLINK_ROUTE, groups: int = 0) -> None:
        """`groups`: the multicast groups to receive (a bit mask), for a socket that
        listens to the kernel's announcements (linkwatch.py)."""
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        try:
            self._sock.bind((0, groups))
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

    def __enter__(self) -> NetlinkSocket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ---------------------------------------------------------

    def _message(self, msg_type: int, flags: int, payload: bytes) -> bytes:
        """One message with the next sequence number (self._seq)."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        hdr = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type, _NLM_F_REQUEST | flags, self._seq, 0)
        return hdr + payload + b"\0" * (_align(len(payload)) - len(payload))

    def _send(self, msg_type: int, flags: int, payload: bytes) -> int:
        self._sock.sendto(self._message(msg_type, flags, payload), (0, 0))
        return self._seq

    def batch(self, begin: tuple, messages: list, end: tuple) -> None:
        """nfnetlink's transaction: `begin`, `messages` and `end` as (type, flags,
        payload) in one datagram, which the kernel applies whole or not at all. Waits
        for the ack of every message; the first error is raised (after all replies
        are read, so none is left for the next request)."""
        data = [self._message(*begin)]
        seqs = []
        for msg_type, flags, payload in messages:
            data.append(self._message(msg_type, flags | _NLM_F_ACK, payload))
            seqs.append(self._seq)
        data.append(self._message(*end))
        first, waiting = seqs[0] - 1, set(seqs)
        self._sock.sendto(b"".join(data), (0, 0))
        error = None
        while waiting:
            for mtype, flags, mseq, mpid, payload in _split(self._recv()):
                if mtype != _NLMSG_ERROR or mpid != self._pid:
                    continue
                err = -_I32.unpack_from(payload, 0)[0]
                if mseq == first and err:  # the batch itself was refused
                    _raise_nlerror(err, self._extack(payload, flags))
                waiting.discard(mseq)
                if err and error is None:
                    error = (err, self._extack(payload, flags))
        if error is not None:
            _raise_nlerror(*error)

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
            for mtype, flags, mseq, mpid, payload in _split(self._recv()):
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
                    import errno

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

    def request(self, msg_type: int, payload: bytes) -> list:
        """One request; its replies as (type, flags, payload) (for callers that speak
        a netlink family of their own, such as ethtool.py)."""
        return self._request(msg_type, 0, payload)

    def genl_family(self, name: str) -> int | None:
        """The id of a generic netlink family, or None when the kernel has none by
        that name (on a NETLINK_GENERIC socket)."""
        payload = _GENLMSGHDR.pack(_CTRL_CMD_GETFAMILY, 1, 0) + _attr(
            _CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0")
        try:
            replies = self._request(_GENL_ID_CTRL, 0, payload)
        except FileNotFoundError:  # ENOENT: no such family
            return None
        for _, _, msg in replies:
            family = _attrs(msg, _GENLMSGHDR.size).get(_CTRL_ATTR_FAMILY_ID)
            if family is not None:
                return _U16.unpack(family[:2])[0]
        return None

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
