"""Frames on the wire, for tests that run inside the full-kernel tier (tests/fullkernel.py):
entering a namespace from this process, TAPs held as QEMU holds them, Ethernet frames
with or without an 802.1Q tag, and a capture that reads the tag from PACKET_AUXDATA.
Nothing here needs the tier itself; the VLAN tests need it for their kernel."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import select
import socket
import struct
import time
from typing import List, NamedTuple, Optional

_CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def netns_entered(name: str):
    """Run the block in network namespace `name` (made with `ip netns add`).

    Sockets and TAPs opened in the block stay in that namespace afterwards, so one
    process can hold TAPs in one namespace and read a veth in another.  The
    process must be single-threaded (setns(2) switches only the calling thread).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({name}): {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if libc.setns(own, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(own)


_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI = 0x0002, 0x1000


def open_tap(name: str) -> int:
    """A new TAP `name` in the current namespace, as QEMU makes it: the returned
    (non-blocking) fd carries the guest's side; closing it deletes the TAP."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI))
    except BaseException:
        os.close(fd)
        raise
    return fd


ETH_P_8021Q = 0x8100
ETH_P_EXPERIMENTAL = 0x88B5  # IEEE 802 local experimental ethertype: no stack answers it
BROADCAST = b"\xff" * 6


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ethernet_frame(dst: bytes, src: bytes, payload: bytes, *, ethertype: int = ETH_P_EXPERIMENTAL,
                   vid: Optional[int] = None) -> bytes:
    """An Ethernet frame (802.1Q-tagged when vid is given), padded to the 60-byte minimum."""
    tag = struct.pack("!HH", ETH_P_8021Q, vid) if vid is not None else b""
    frame = dst + src + tag + struct.pack("!H", ethertype) + payload
    return frame + b"\0" * max(0, 60 - len(frame))


class Frame(NamedTuple):
    data: bytes  # as the receiver got it (without the tag when the kernel took it out)
    vid: Optional[int]  # the 802.1Q VID, from PACKET_AUXDATA or from the data

    @property
    def ethertype(self) -> int:
        return struct.unpack_from("!H", self.data, 12)[0]

    def carries(self, marker: bytes) -> bool:
        return marker in self.data


def _untag(data: bytes) -> Frame:
    """A frame read from a TAP: tags, if any, are still in the data."""
    if len(data) >= 18 and struct.unpack_from("!H", data, 12)[0] == ETH_P_8021Q:
        vid = struct.unpack_from("!H", data, 14)[0] & 0x0FFF
        return Frame(data[:12] + data[16:], vid)
    return Frame(data, None)


def _receive(fd, read, timeout: float, until) -> list:
    """What read() returns while `fd` is readable: everything already queued, then
    more until `timeout` seconds have passed or `until(list so far)` holds."""
    got: list = []
    deadline = time.monotonic() + timeout
    while until is None or not until(got):
        left = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            with contextlib.suppress(BlockingIOError):
                item = read()
                if item is not None:
                    got.append(item)
        elif left == 0:
            break
    return got


def read_tap(fd: int, timeout: float = 0.5, until=None) -> List[Frame]:
    """Frames the TAP fd has queued or gets within `timeout` seconds (stop early once
    `until`, a predicate on the list so far, holds)."""
    return _receive(fd, lambda: _untag(os.read(fd, 65536)), timeout, until)


_SOL_PACKET = 263
_PACKET_AUXDATA = 8
_PACKET_OUTGOING = 4
_TP_STATUS_VLAN_VALID = 0x10
_TPACKET_AUXDATA = struct.Struct("=IIIHHHH")  # status, len, snaplen, mac, net, vlan_tci, vlan_tpid
_ETH_P_ALL = 0x0003


class Capture:
    """Every frame that arrives on one interface, read with AF_PACKET.

    The receive path takes the 802.1Q tag out of the frame before packet sockets
    see it (whatever rx-vlan-offload says), so the VID comes from PACKET_AUXDATA's
    tp_vlan_tci.  Frames the interface sends are ignored.  Open it in the
    interface's namespace (netns_entered).
    """

    def __init__(self, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        try:
            self.sock.bind((ifname, _ETH_P_ALL))
            self.sock.setsockopt(_SOL_PACKET, _PACKET_AUXDATA, 1)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def send(self, frame: bytes) -> None:
        """Transmit `frame` as it is (tag included) out of the interface."""
        self.sock.send(frame)

    def frames(self, timeout: float = 0.5, until=None) -> List[Frame]:
        """Frames received (queued, or arriving within `timeout` seconds; stop early
        once `until`, a predicate on the list so far, holds)."""
        return _receive(self.sock, self._read, timeout, until)

    def _read(self) -> Optional[Frame]:
        data, ancdata, _, addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(_TPACKET_AUXDATA.size))
        if addr[2] == _PACKET_OUTGOING:
            return None
        frame = _untag(data)
        for level, kind, raw in ancdata:
            if level == _SOL_PACKET and kind == _PACKET_AUXDATA and len(raw) >= _TPACKET_AUXDATA.size:
                status, *_, tci, _tpid = _TPACKET_AUXDATA.unpack_from(raw)
                if status & _TP_STATUS_VLAN_VALID:
                    frame = Frame(frame.data, tci & 0x0FFF)
        return frame

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
