"""rtnetlink messages for segments that span hosts: VXLAN links, the bridge fdb (`bridge
fdb append/del/show`), bridge-port flags (`bridge link set ... learning off
neigh_suppress on`) and the host's addresses. Stdlib only: the hook uses them.

Functions over a `netlink.Netlink` (one NETLINK_ROUTE socket), kept out of netlink.py
so that it stays the small codec of the links every hook handles.
"""

from __future__ import annotations

import errno
import struct

import _socket as socket  # not `socket`: see nlsocket.py

from .netlink import Netlink, _ifname, _parse_link
from .nlsocket import _NLM_F_CREATE, _NLM_F_EXCL, _U32, _attr, _attrs, _nested, _u32_attr
from .record import Record
from .vxlanops import VXLAN_PORT

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import List, Optional, Set

_RTM_NEWLINK, _RTM_GETLINK, _RTM_SETLINK = 16, 18, 19
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_RTM_NEWNEIGH, _RTM_DELNEIGH, _RTM_GETNEIGH = 28, 29, 30
_NLM_F_APPEND = 0x800
_AF_BRIDGE = 7
_IFLA_IFNAME, _IFLA_MTU, _IFLA_LINKINFO, _IFLA_PROTINFO = 3, 4, 18, 12
_IFLA_INFO_KIND, _IFLA_INFO_DATA = 1, 2
# linux/if_link.h: IFLA_VXLAN_*
_VXLAN_ID, _VXLAN_GROUP, _VXLAN_LINK, _VXLAN_LOCAL = 1, 2, 3, 4
_VXLAN_LEARNING, _VXLAN_PORT, _VXLAN_GROUP6, _VXLAN_LOCAL6 = 7, 15, 16, 17
# linux/if_link.h: IFLA_BRPORT_*
# linux/neighbour.h
_NDA_DST, _NDA_LLADDR = 1, 2
_NUD_NOARP, _NUD_PERMANENT = 0x40, 0x80
NTF_SELF, NTF_MASTER, NTF_EXT_LEARNED = 0x02, 0x04, 0x10
_IFA_ADDRESS, _IFA_LOCAL = 1, 2

_IFINFOMSG = struct.Struct("=BxHiII")
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_IFADDRMSG = struct.Struct("=BBBBI")
_BE16 = struct.Struct("!H")

ALL_ZEROS = "00:00:00:00:00:00"  # the fdb entry that floods BUM traffic to a VTEP


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _packed(address: str) -> bytes:
    return socket.inet_pton(family_of(address), address)


def _mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


class Vxlan(Record):
    """A VXLAN link and the settings the segments care about."""

    __slots__ = ("link", "vni", "local", "dev", "port", "group", "learning")

    def differences(self, vni: int, local: str, dev: int, group: Optional[str],
                    learning: bool) -> List[str]:
        wanted = (("VNI", vni, self.vni), ("local", local, self.local),
                  ("dev ifindex", dev, self.dev), ("dstport", VXLAN_PORT, self.port),
                  ("group", group, self.group),
                  ("learning", "on" if learning else "off", "on" if self.learning else "off"))
        return [f"{what} {have} (want {want})" for what, want, have in wanted if want != have]


def _address(view) -> Optional[str]:
    raw = bytes(view)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw) if raw != b"\0" * 4 else None
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw) if raw != b"\0" * 16 else None
    return None


def get_vxlan(nl: Netlink, name: str) -> Optional[Vxlan]:
    """The link `name` with its VXLAN settings (vni None when it is not a VXLAN link);
    None when there is no such link."""
    payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _ifname(name))
    try:
        replies = nl._request(_RTM_GETLINK, 0, payload)
    except OSError as e:
        if e.errno == errno.ENODEV:
            return None
        raise
    for mtype, _, msg in replies:
        if mtype != _RTM_NEWLINK:
            continue
        link = _parse_link(msg)
        data = {}
        info = _attrs(msg, _IFINFOMSG.size).get(_IFLA_LINKINFO)
        if info is not None and link.kind == "vxlan":
            raw = _attrs(info).get(_IFLA_INFO_DATA)
            data = _attrs(raw) if raw is not None else {}

        def u32(key):
            return _U32.unpack(bytes(data[key][:4]))[0] if key in data else None
        local = data.get(_VXLAN_LOCAL, data.get(_VXLAN_LOCAL6))
        group = data.get(_VXLAN_GROUP, data.get(_VXLAN_GROUP6))
        port = data.get(_VXLAN_PORT)
        learning = data.get(_VXLAN_LEARNING)
        return Vxlan(link, u32(_VXLAN_ID), _address(local) if local is not None else None,
                     u32(_VXLAN_LINK) or 0, _BE16.unpack(bytes(port[:2]))[0] if port else None,
                     _address(group) if group is not None else None,
                     bool(learning[0]) if learning is not None and len(learning) else True)
    return None


def create_vxlan(nl: Netlink, name: str, *, vni: int, local: str, dev: int,
                 group: Optional[str] = None, learning: bool = True,
                 mtu: Optional[int] = None) -> None:
    """`ip link add NAME type vxlan id VNI local LOCAL dev DEV dstport 4789 [group G]
    [nolearning]`, left down. With `dev` the kernel sizes its MTU to the underlay's
    minus the VXLAN overhead, and sends multicast out of it."""
    v6 = family_of(local) == socket.AF_INET6
    data = [_u32_attr(_VXLAN_ID, vni),
            _attr(_VXLAN_LOCAL6 if v6 else _VXLAN_LOCAL, _packed(local)),
            _u32_attr(_VXLAN_LINK, dev),
            _attr(_VXLAN_PORT, _BE16.pack(VXLAN_PORT)),
            _attr(_VXLAN_LEARNING, b"\x01" if learning else b"\x00")]
    if group is not None:
        data.append(_attr(_VXLAN_GROUP6 if v6 else _VXLAN_GROUP, _packed(group)))
    attrs = [_attr(_IFLA_IFNAME, _ifname(name))]
    if mtu is not None:
        attrs.append(_u32_attr(_IFLA_MTU, mtu))
    attrs.append(_nested(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, b"vxlan"),
                         _nested(_IFLA_INFO_DATA, *data)))
    payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(attrs)
    nl._ack(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, payload)


def _fdb_message(index: int, mac: str, dst: str) -> bytes:
    return (_NDMSG.pack(_AF_BRIDGE, index, _NUD_NOARP | _NUD_PERMANENT, NTF_SELF, 0) +
            _attr(_NDA_LLADDR, _mac_bytes(mac)) + _attr(_NDA_DST, _packed(dst)))


def fdb_append(nl: Netlink, index: int, dst: str, mac: str = ALL_ZEROS) -> None:
    """`bridge fdb append MAC dev INDEX dst DST` (one more VTEP for MAC)."""
    nl._ack(_RTM_NEWNEIGH, _NLM_F_CREATE | _NLM_F_APPEND, _fdb_message(index, mac, dst))


def fdb_del(nl: Netlink, index: int, dst: str, mac: str = ALL_ZEROS) -> None:
    """`bridge fdb del MAC dev INDEX dst DST`; an entry already gone is fine."""
    try:
        nl._ack(_RTM_DELNEIGH, 0, _fdb_message(index, mac, dst))
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


class FdbEntry(Record):
    """One `bridge fdb show` line of a VXLAN link: a MAC and the VTEP behind it."""

    __slots__ = ("mac", "dst", "flags", "state")

    @property
    def extern_learn(self) -> bool:
        """Installed by a control plane (FRR's zebra for EVPN), not learned."""
        return bool(self.flags & NTF_EXT_LEARNED)


def fdb_entries(nl: Netlink, index: int) -> List[FdbEntry]:
    """The fdb entries of link `index` that name a remote (`dst`), as `bridge fdb show
    dev X` lists them with `self`."""
    out = []
    # With strict checking (nlsocket asks for it) the kernel dumps only this device's
    # entries, so the cost does not grow with the guests on other bridges; older
    # kernels dump them all, and the index is checked here as well.
    payload = _NDMSG.pack(_AF_BRIDGE, index, 0, 0, 0)
    for mtype, _, msg in nl._dump(_RTM_GETNEIGH, payload):
        if mtype != _RTM_NEWNEIGH:
            continue
        _, ifindex, state, flags, _ = _NDMSG.unpack_from(msg, 0)
        if ifindex != index:
            continue
        at = _attrs(msg, _NDMSG.size)
        mac, dst = at.get(_NDA_LLADDR), at.get(_NDA_DST)
        if mac is None or dst is None:
            continue
        address = _address(dst)
        if address is not None:
            out.append(FdbEntry(":".join(f"{b:02x}" for b in bytes(mac)), address, flags, state))
    return out


def flood_list(nl: Netlink, index: int) -> List[str]:
    """The VTEPs that broadcast, unknown unicast and multicast go to (the all-zeros
    entries' destinations), sorted."""
    return sorted({e.dst for e in fdb_entries(nl, index) if e.mac == ALL_ZEROS})


def host_addresses(nl: Netlink) -> Set[str]:
    """Every address configured on a link of this network namespace."""
    out = set()
    for mtype, _, msg in nl._dump(_RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
        if mtype != _RTM_NEWADDR:
            continue
        family = msg[0]
        at = _attrs(msg, _IFADDRMSG.size)
        raw = at.get(_IFA_LOCAL, at.get(_IFA_ADDRESS))
        if raw is not None and family in (socket.AF_INET, socket.AF_INET6):
            out.add(socket.inet_ntop(family, bytes(raw)))
    return out
