"""Minimal rtnetlink (NETLINK_ROUTE) client for the hook's hot path: reading a link
and changing one that exists (master, MTU, up/down, address, alias), over the
transport of nlsocket.py.  One request per operation, and only the attributes
``Link`` needs are decoded.

The rest of rtnetlink is in modules of functions over a ``Netlink``, which a hook on
an existing bridge does not load: linkbuild.py creates and deletes links, sets bridge
port flags and lists links and addresses; bridgevlan.py edits and reads bridge VLANs;
vxlannl.py does VXLAN and the bridge fdb.

``set_link(alias=...)`` and ``Link.alias`` write and read a link's alias
(IFLA_IFALIAS), which the hooks use to mark the subinterfaces they create.
"""

from __future__ import annotations

import _socket as socket  # not `socket`: see nlsocket.py
import _struct as struct  # see nlsocket.py

from .nlsocket import (NETLINK_GENERIC, NETLINK_ROUTE, NetlinkSocket, _attr, _attrs, _cstr,
                       _u32_attr, _U16, _U32)
from .record import Record

__all__ = [
    "IFF_UP",
    "IFF_LOWER_UP",
    "IFF_RUNNING",
    "Link",
    "Netlink",
    "NETLINK_GENERIC",
    "NETLINK_ROUTE",
]

# ifi_flags (linux/if.h)
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_LOWER_UP = 0x10000

# rtnetlink (linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h)
_RTM_NEWLINK = 16
_RTM_GETLINK = 18
_IFLA_ADDRESS = 1
_IFLA_IFNAME = 3
_IFLA_MTU = 4
_IFLA_LINK = 5
_IFLA_MASTER = 10
_IFLA_OPERSTATE = 16
_IFLA_IFALIAS = 20
_IFLA_LINKINFO = 18
_IFLA_EXT_MASK = 29
_IFLA_INFO_KIND = 1
_IFLA_INFO_DATA = 2
_IFLA_TUN_TYPE = 3
_IFLA_BR_VLAN_FILTERING = 7
_IFLA_BR_VLAN_DEFAULT_PVID = 39
_IFLA_VLAN_ID = 1
_RTEXT_FILTER_SKIP_STATS = 1 << 3
_ARPHRD_ETHER = 1
_TUN_TYPE_NAMES = {1: "tun", 2: "tap"}  # IFF_TUN, IFF_TAP
_IFNAMSIZ = 16
_IFALIASZ = 256

_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change


class Link(Record):
    """One link as the kernel reports it (RTM_GETLINK)."""

    __slots__ = (
        "index",
        "name",
        "kind",  # IFLA_INFO_KIND; None for links without rtnl_link_ops (lo, NICs)
        "tun_type",  # "tap" or "tun" when kind == "tun", else None
        "flags",
        "mtu",
        "master",  # 0 when none
        "address",  # bytes or None
        "operstate",  # IF_OPER_* (6 = up)
        # Added later, hence the defaults: positional and keyword constructions stay valid.
        "link",  # IFLA_LINK: a VLAN's parent, a veth's peer; 0 when absent
        "vlan_id",  # 802.1Q VID when kind == "vlan"
        "vlan_filtering",  # when kind == "bridge"
        # When kind == "bridge": the PVID new ports get (0 = none).  None on a bridge
        # means the kernel lacks CONFIG_BRIDGE_VLAN_FILTERING (it only reports the
        # attribute when built with it).
        "vlan_default_pvid",
        "alias",  # IFLA_IFALIAS (`ip link set dev X alias TEXT`); None when unset
    )
    _defaults = {"link": 0, "vlan_id": None, "vlan_filtering": None,
                 "vlan_default_pvid": None, "alias": None}

    @property
    def is_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def is_tap(self) -> bool:
        return self.kind == "tun" and self.tun_type == "tap"


def _ifname(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    # The kernel would refuse (ERANGE) or, for ioctls, truncate such names.
    if not raw or len(raw) >= _IFNAMSIZ or b"\0" in raw:
        raise ValueError(f"invalid interface name: {name!r}")
    return raw + b"\0"


def _u16_of(view) -> int | None:
    return _U16.unpack_from(view)[0] if view is not None and len(view) >= 2 else None


def _parse_link(msg) -> Link:
    _, ifi_type, index, flags, _ = _IFINFOMSG.unpack_from(msg, 0)
    at = _attrs(msg, _IFINFOMSG.size)
    kind = tun_type = vlan_id = vlan_filtering = vlan_default_pvid = None
    info = at.get(_IFLA_LINKINFO)
    if info is not None:
        info_at = _attrs(info)
        if _IFLA_INFO_KIND in info_at:
            kind = _cstr(info_at[_IFLA_INFO_KIND])
        raw_data = info_at.get(_IFLA_INFO_DATA)
        data = _attrs(raw_data) if raw_data is not None else {}
        if kind == "tun":
            raw = data.get(_IFLA_TUN_TYPE)
            if raw is not None and len(raw) >= 1:
                tun_type = _TUN_TYPE_NAMES.get(raw[0])
            if tun_type is None:  # kernels before 4.15 have no tun fill_info
                tun_type = "tap" if ifi_type == _ARPHRD_ETHER else "tun"
        elif kind == "vlan":
            vlan_id = _u16_of(data.get(_IFLA_VLAN_ID))
        elif kind == "bridge":
            raw = data.get(_IFLA_BR_VLAN_FILTERING)
            if raw is not None and len(raw) >= 1:
                vlan_filtering = bool(raw[0])
            vlan_default_pvid = _u16_of(data.get(_IFLA_BR_VLAN_DEFAULT_PVID))
    mtu = at.get(_IFLA_MTU)
    master = at.get(_IFLA_MASTER)
    oper = at.get(_IFLA_OPERSTATE)
    addr = at.get(_IFLA_ADDRESS)
    parent = at.get(_IFLA_LINK)
    alias = at.get(_IFLA_IFALIAS)
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
        link=_U32.unpack(parent)[0] if parent is not None else 0,
        vlan_id=vlan_id,
        vlan_filtering=vlan_filtering,
        vlan_default_pvid=vlan_default_pvid,
        alias=(_cstr(alias) or None) if alias is not None else None,
    )


class Netlink(NetlinkSocket):
    """rtnetlink operations on one NETLINK_ROUTE socket (or NETLINK_GENERIC, for
    ``genl_family`` and ``request``); use as a context manager (closes the socket)."""

    # -- links -------------------------------------------------------------

    def _ext_mask_attr(self) -> bytes:
        return _u32_attr(_IFLA_EXT_MASK, _RTEXT_FILTER_SKIP_STATS) if self._ext_mask else b""

    def _get_link(self, index: int, extra: bytes) -> Link | None:
        while True:
            payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + extra + self._ext_mask_attr()
            try:
                replies = self._request(_RTM_GETLINK, 0, payload)
            except OSError as e:
                import errno  # here, not at the top: see nlsocket.py

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

    def set_link(
        self,
        index: int,
        *,
        master: int | None = None,
        mtu: int | None = None,
        up: bool | None = None,
        address: bytes | None = None,
        alias: str | None = None,
    ) -> None:
        """Change only the given fields; master=0 detaches from the current master,
        alias="" removes the alias."""
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
        if alias is not None:
            raw = alias.encode("utf-8", "surrogateescape")
            if len(raw) >= _IFALIASZ or b"\0" in raw:
                raise ValueError(f"invalid interface alias: {alias!r}")
            attrs.append(_attr(_IFLA_IFALIAS, raw))  # as iproute2 sends it: no NUL
        payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change) + b"".join(attrs)
        self._ack(_RTM_NEWLINK, 0, payload)
