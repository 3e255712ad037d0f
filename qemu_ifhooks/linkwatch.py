"""Links as they go: the kernel's RTM_DELLINK announcements (the RTNLGRP_LINK multicast
group of rtnetlink), for the broker, which sweeps what a TAP of its left behind as soon
as the TAP is gone instead of polling for it."""

from __future__ import annotations

import errno

import _socket as socket  # not `socket`: see nlsocket.py

from .nlsocket import NETLINK_ROUTE, NetlinkSocket, _attrs, _cstr, _split

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

_RTMGRP_LINK = 1
_RTM_DELLINK = 17
_IFLA_IFNAME = 3
_IFINFOMSG_SIZE = 16
# Room for a burst of events (every link change is one): fewer overruns, which cost a
# full sweep each.
_RCVBUF = 1 << 20


class LinkWatch(NetlinkSocket):
    """A non-blocking socket that receives the link events of this network namespace.
    Wait for it with select(), then read the names with removed()."""

    def __init__(self) -> None:
        super().__init__(NETLINK_ROUTE, groups=_RTMGRP_LINK)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            self._sock.setblocking(False)
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def removed(self) -> Optional[List[str]]:
        """The names of the links removed since the last call (reads every event that
        is queued); None when the kernel dropped events because the queue was full:
        any link may have gone."""
        names: List[str] = []
        while True:
            try:
                data = self._sock.recv(_RCVBUF)
            except BlockingIOError:
                return names
            except OSError as error:
                if error.errno == errno.ENOBUFS:
                    self._drain()
                    return None
                raise
            for mtype, _, _, _, payload in _split(data):
                if mtype == _RTM_DELLINK and len(payload) >= _IFINFOMSG_SIZE:
                    name = _attrs(payload, _IFINFOMSG_SIZE).get(_IFLA_IFNAME)
                    if name is not None:
                        names.append(_cstr(name))

    def _drain(self) -> None:
        """Drop what is queued: after an overrun the caller looks at everything anyway."""
        while True:
            try:
                self._sock.recv(_RCVBUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise
