"""Minimal rtnetlink (NETLINK_ROUTE) client for the hook's hot path: links, bridge
ports and addresses, over the transport of nlsocket.py.  One request per operation,
and only the attributes ``Link`` needs are decoded.

802.1Q: ``create_vlan`` makes a VLAN subinterface, ``create_bridge`` can turn on
VLAN filtering, and ``bridge_vlan_add``/``bridge_vlan_del``/``bridge_vlans`` edit
and read a bridge port's VLANs (``bridge vlan``).  A kernel built without
CONFIG_VLAN_8021Q or CONFIG_BRIDGE_VLAN_FILTERING answers those with EOPNOTSUPP;
they raise ``MissingKernelFeature`` (an OSError) then, so callers can say which
kernel option is missing instead of showing a bare netlink error.

``set_link(alias=...)`` and ``Link.alias`` write and read a link's alias
(IFLA_IFALIAS), which the hooks use to mark the subinterfaces they create.
"""

from __future__ import annotations

import _socket as socket  # not `socket`: see nlsocket.py
import _struct as struct  # see nlsocket.py

from .nlsocket import (NETLINK_GENERIC, NETLINK_ROUTE, _NLM_F_CREATE, _NLM_F_EXCL,
                       NetlinkSocket, _attr, _attr_items, _attrs, _cstr, _nested, _u16_attr,
                       _u32_attr, _U16, _U32)
from .record import Record

__all__ = [
    "IFF_UP",
    "IFF_LOWER_UP",
    "IFF_RUNNING",
    "BridgeVlan",
    "Link",
    "MissingKernelFeature",
    "Netlink",
    "FEATURE_8021Q",
    "FEATURE_BRIDGE_VLAN_FILTERING",
    "NETLINK_GENERIC",
    "NETLINK_ROUTE",
]

# ifi_flags (linux/if.h)
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_LOWER_UP = 0x10000

# rtnetlink (linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h)
_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_RTM_GETLINK = 18
_RTM_SETLINK = 19
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_IFLA_ADDRESS = 1
_IFLA_IFNAME = 3
_IFLA_MTU = 4
_IFLA_LINK = 5
_IFLA_MASTER = 10
_IFLA_OPERSTATE = 16
_IFLA_IFALIAS = 20
_IFLA_LINKINFO = 18
_IFLA_AF_SPEC = 26
_IFLA_EXT_MASK = 29
_IFLA_INFO_KIND = 1
_IFLA_INFO_DATA = 2
_IFLA_TUN_TYPE = 3
_IFLA_BR_FORWARD_DELAY = 1
_IFLA_BR_STP_STATE = 5
_IFLA_BR_VLAN_FILTERING = 7
_IFLA_BR_VLAN_DEFAULT_PVID = 39
_IFLA_VLAN_ID = 1
_RTEXT_FILTER_BRVLAN = 1 << 1
_RTEXT_FILTER_SKIP_STATS = 1 << 3
# linux/if_bridge.h: IFLA_AF_SPEC of AF_BRIDGE messages
_AF_BRIDGE = 7
_IFLA_PROTINFO = 12
_IFLA_BRPORT_FLAGS = {"learning": 8, "neigh_suppress": 32, "isolated": 33}  # IFLA_BRPORT_*
_IFLA_BRIDGE_FLAGS = 0
_IFLA_BRIDGE_VLAN_INFO = 2
_BRIDGE_FLAGS_SELF = 2
_BRIDGE_VLAN_INFO_PVID = 0x2
_BRIDGE_VLAN_INFO_UNTAGGED = 0x4
_BRIDGE_VLAN_INFO_RANGE_BEGIN = 0x8
_BRIDGE_VLAN_INFO_RANGE_END = 0x10
_VLAN_VID_MAX = 4094
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_RT_SCOPE_UNIVERSE = 0
_ARPHRD_ETHER = 1
_TUN_TYPE_NAMES = {1: "tun", 2: "tap"}  # IFF_TUN, IFF_TAP
_IFNAMSIZ = 16
_IFALIASZ = 256
_USER_HZ = 100  # the bridge speaks clock_t (1/100 s), whatever the kernel HZ

_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_BRIDGE_VLAN_INFO = struct.Struct("=HH")  # flags, vid



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


class BridgeVlan(tuple):
    """One VLAN of a bridge port (or of the bridge itself), as `bridge vlan show`:
    a (vid, pvid, untagged) tuple with names (typing.NamedTuple, without its import)."""

    __slots__ = ()

    def __new__(cls, vid: int, pvid: bool, untagged: bool) -> BridgeVlan:
        return tuple.__new__(cls, (vid, pvid, untagged))

    vid = property(lambda self: self[0])
    pvid = property(lambda self: self[1], doc="untagged frames coming in get this VID")
    untagged = property(lambda self: self[2], doc="frames of this VID go out untagged")

    def __repr__(self) -> str:
        return f"BridgeVlan(vid={self[0]}, pvid={self[1]}, untagged={self[2]})"


def _parse_bridge_vlans(spec) -> list[BridgeVlan]:
    """The IFLA_BRIDGE_VLAN_INFO entries of an AF_BRIDGE IFLA_AF_SPEC, ranges expanded."""
    out = []
    begin = None
    for kind, raw in _attr_items(spec):
        if kind != _IFLA_BRIDGE_VLAN_INFO or len(raw) < _BRIDGE_VLAN_INFO.size:
            continue
        flags, vid = _BRIDGE_VLAN_INFO.unpack_from(raw)
        if flags & _BRIDGE_VLAN_INFO_RANGE_BEGIN:
            begin = vid
            continue
        first = begin if begin is not None and flags & _BRIDGE_VLAN_INFO_RANGE_END else vid
        begin = None
        pvid, untagged = bool(flags & _BRIDGE_VLAN_INFO_PVID), bool(flags & _BRIDGE_VLAN_INFO_UNTAGGED)
        out.extend(BridgeVlan(v, pvid, untagged) for v in range(first, vid + 1))
    return out


FEATURE_8021Q = "CONFIG_VLAN_8021Q"
FEATURE_BRIDGE_VLAN_FILTERING = "CONFIG_BRIDGE_VLAN_FILTERING"
_FEATURE_TEXT = {
    FEATURE_8021Q: "802.1Q VLAN support (CONFIG_VLAN_8021Q, module 8021q)",
    FEATURE_BRIDGE_VLAN_FILTERING: "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)",
}


class MissingKernelFeature(OSError):
    """The running kernel was built without a feature the request needs.

    An OSError with errno EOPNOTSUPP, as the kernel answered; ``feature`` is
    FEATURE_8021Q or FEATURE_BRIDGE_VLAN_FILTERING (the kernel config option) and
    ``extack`` the kernel's own text, if any.
    """

    def __init__(self, feature: str, extack: str | None = None) -> None:
        import errno  # here, not at the top: see nlsocket.py

        super().__init__(errno.EOPNOTSUPP, f"kernel lacks {_FEATURE_TEXT.get(feature, feature)}")
        self.feature = feature
        self.extack = extack


def _vid(vid: int, low: int = 1) -> int:
    if not isinstance(vid, int) or isinstance(vid, bool) or not low <= vid <= _VLAN_VID_MAX:
        raise ValueError(f"invalid VLAN id: {vid!r} (expected {low}..{_VLAN_VID_MAX})")
    return vid


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
        self,
        name: str,
        *,
        address: bytes | None = None,
        stp: bool = False,
        forward_delay: int = 0,
        vlan_filtering: bool = False,
        default_pvid: int | None = None,
    ) -> None:
        """Create a bridge, left down.  forward_delay is in seconds.

        vlan_filtering=True makes it VLAN-aware; default_pvid is the PVID (untagged)
        that new ports and the bridge itself get, 0 for none (the kernel's default
        is 1).  A kernel without CONFIG_BRIDGE_VLAN_FILTERING refuses
        IFLA_BR_VLAN_FILTERING, even 0, with EOPNOTSUPP and no extack (and creates
        nothing): that raises MissingKernelFeature(FEATURE_BRIDGE_VLAN_FILTERING).
        So the attribute is sent only when vlan_filtering is True.  Such a kernel
        silently ignores IFLA_BR_VLAN_DEFAULT_PVID.
        """
        if forward_delay < 0:
            raise ValueError(f"negative forward_delay: {forward_delay}")
        attrs = [_attr(_IFLA_IFNAME, _ifname(name))]
        if address is not None:
            attrs.append(_attr(_IFLA_ADDRESS, bytes(address)))
        # The kernel applies FORWARD_DELAY before STP_STATE, so a delay outside the
        # STP range (2..30 s) is accepted here and then clamped when STP starts.
        # Likewise it turns VLAN filtering on before it applies the default PVID.
        data = [
            _u32_attr(_IFLA_BR_FORWARD_DELAY, round(forward_delay * _USER_HZ)),
            _u32_attr(_IFLA_BR_STP_STATE, 1 if stp else 0),
        ]
        if vlan_filtering:
            data.append(_attr(_IFLA_BR_VLAN_FILTERING, b"\x01"))
        if default_pvid is not None:
            data.append(_u16_attr(_IFLA_BR_VLAN_DEFAULT_PVID, _vid(default_pvid, low=0)))
        attrs.append(_nested(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, b"bridge"), _nested(_IFLA_INFO_DATA, *data)))
        payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(attrs)
        try:
            self._ack(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, payload)
        except OSError as e:
            import errno  # here, not at the top: see nlsocket.py

            if vlan_filtering and e.errno == errno.EOPNOTSUPP:
                raise MissingKernelFeature(FEATURE_BRIDGE_VLAN_FILTERING, getattr(e, "extack", None)) from None
            raise

    def create_vlan(self, name: str, *, parent: int, vid: int, mtu: int | None = None) -> None:
        """Create an 802.1Q subinterface `name` of link `parent` (an index), left down.

        Without mtu it takes the parent's.  A kernel without 802.1Q support
        (CONFIG_VLAN_8021Q, and no 8021q module to load) answers EOPNOTSUPP with the
        extack "Unknown device type": that raises
        MissingKernelFeature(FEATURE_8021Q).  A parent that cannot carry VLANs
        (lo, a TUN) is EOPNOTSUPP too, but with the extack "VLANs not supported on
        device" and stays a plain OSError; an unknown parent is ENODEV, a VID already
        on the parent EEXIST.
        """
        if parent <= 0:
            raise ValueError(f"invalid parent interface index: {parent}")
        attrs = [_attr(_IFLA_IFNAME, _ifname(name)), _u32_attr(_IFLA_LINK, parent)]
        if mtu is not None:
            attrs.append(_u32_attr(_IFLA_MTU, mtu))
        data = _nested(_IFLA_INFO_DATA, _u16_attr(_IFLA_VLAN_ID, _vid(vid)))
        attrs.append(_nested(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, b"vlan"), data))
        payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(attrs)
        try:
            self._ack(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, payload)
        except OSError as e:
            import errno  # here, not at the top: see nlsocket.py

            extack = getattr(e, "extack", None)
            if e.errno == errno.EOPNOTSUPP and extack == "Unknown device type":
                raise MissingKernelFeature(FEATURE_8021Q, extack) from None
            raise

    def create_link(self, name: str, kind: str) -> None:
        """Create a link of a kind that needs no settings (ifb, dummy), left down."""
        info = _nested(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, kind.encode() + b"\0"))
        payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _ifname(name)) + info
        self._ack(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, payload)

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

    def set_bridge_port(self, index: int, **flags: bool) -> None:
        """Set bridge port flags of a port (`bridge link set dev X isolated on`):
        isolated, learning, neigh_suppress."""
        if index <= 0:
            raise ValueError(f"invalid interface index: {index}")
        attrs = [_attr(_IFLA_BRPORT_FLAGS[name], b"\x01" if on else b"\x00") for name, on in flags.items()]
        payload = _IFINFOMSG.pack(_AF_BRIDGE, 0, index, 0, 0) + _nested(_IFLA_PROTINFO, *attrs)
        self._ack(_RTM_SETLINK, 0, payload)

    def delete_link(self, index: int) -> None:
        if index <= 0:
            raise ValueError(f"invalid interface index: {index}")
        self._ack(_RTM_DELLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    # -- bridge VLANs (bridge vlan add/del/show) ----------------------------

    def _bridge_vlan(self, msg_type: int, index: int, vid: int, flags: int, self_: bool) -> None:
        if index <= 0:
            raise ValueError(f"invalid interface index: {index}")
        spec = []
        if self_:
            spec.append(_u16_attr(_IFLA_BRIDGE_FLAGS, _BRIDGE_FLAGS_SELF))
        spec.append(_attr(_IFLA_BRIDGE_VLAN_INFO, _BRIDGE_VLAN_INFO.pack(flags, _vid(vid))))
        payload = _IFINFOMSG.pack(_AF_BRIDGE, 0, index, 0, 0) + _nested(_IFLA_AF_SPEC, *spec)
        try:
            self._ack(msg_type, 0, payload)
        except OSError as e:
            import errno  # here, not at the top: see nlsocket.py

            # EOPNOTSUPP also means "not a bridge port" (or a bridge without self_):
            # only a bridge that reports no default PVID proves the kernel lacks it.
            if e.errno == errno.EOPNOTSUPP and self._lacks_vlan_filtering(index):
                raise MissingKernelFeature(FEATURE_BRIDGE_VLAN_FILTERING, getattr(e, "extack", None)) from None
            raise

    def _lacks_vlan_filtering(self, index: int) -> bool:
        link = self.get_link_by_index(index)
        if link is not None and link.kind != "bridge" and link.master:
            link = self.get_link_by_index(link.master)
        return link is not None and link.kind == "bridge" and link.vlan_default_pvid is None

    def bridge_vlan_add(
        self, index: int, vid: int, *, pvid: bool = False, untagged: bool = False, self_: bool = False
    ) -> None:
        """`bridge vlan add dev INDEX vid VID [pvid] [untagged] [self]`.

        Without self_ the VLAN goes on the bridge port `index` (EOPNOTSUPP when it
        is not a port); with self_ on the bridge device `index` itself.  Adding a
        VID that is there updates its flags; a new PVID replaces the old one.  On a
        kernel without CONFIG_BRIDGE_VLAN_FILTERING the answer is EOPNOTSUPP:
        MissingKernelFeature(FEATURE_BRIDGE_VLAN_FILTERING).
        """
        flags = (_BRIDGE_VLAN_INFO_PVID if pvid else 0) | (_BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
        self._bridge_vlan(_RTM_SETLINK, index, vid, flags, self_)

    def bridge_vlan_del(self, index: int, vid: int, *, self_: bool = False) -> None:
        """`bridge vlan del dev INDEX vid VID [self]`; a VID that is not there is fine."""
        self._bridge_vlan(_RTM_DELLINK, index, vid, 0, self_)

    def bridge_vlans(self, index: int) -> list[BridgeVlan]:
        """VLANs of bridge port `index` (or of bridge `index` itself), by VID.

        An empty list for a link that is neither, and on kernels without
        CONFIG_BRIDGE_VLAN_FILTERING.
        """
        if index <= 0:
            raise ValueError(f"invalid interface index: {index}")
        # The kernel dumps every bridge and port (strict checking refuses an index
        # in the request).  Ranges come only with RTEXT_FILTER_BRVLAN_COMPRESSED,
        # which is not asked for; they are expanded all the same.
        payload = _IFINFOMSG.pack(_AF_BRIDGE, 0, 0, 0, 0) + _u32_attr(_IFLA_EXT_MASK, _RTEXT_FILTER_BRVLAN)
        vlans = {}
        for mtype, _, msg in self._dump(_RTM_GETLINK, payload):
            if mtype != _RTM_NEWLINK or _IFINFOMSG.unpack_from(msg, 0)[2] != index:
                continue
            spec = _attrs(msg, _IFINFOMSG.size).get(_IFLA_AF_SPEC)
            if spec is not None:
                vlans.update((v.vid, v) for v in _parse_bridge_vlans(spec))
        return [vlans[v] for v in sorted(vlans)]

    # -- addresses ---------------------------------------------------------

    def global_addresses(self, index: int) -> list[str]:
        """Universe-scope addresses of one link as "addr/prefixlen" text."""
        # With strict checking the kernel filters by ifa_index; otherwise it is ignored.
        payload = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, index)
        try:
            replies = self._dump(_RTM_GETADDR, payload)
        except OSError as e:
            import errno  # here, not at the top: see nlsocket.py

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
