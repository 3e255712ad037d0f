"""802.1Q over rtnetlink: a bridge port's VLANs (`bridge vlan add/del/show`), and the
error of a kernel built without 802.1Q or bridge VLAN filtering.

A kernel built without CONFIG_VLAN_8021Q or CONFIG_BRIDGE_VLAN_FILTERING answers
these requests, and those that make a VLAN subinterface or a VLAN-aware bridge
(linkbuild.py), with EOPNOTSUPP; they raise ``MissingKernelFeature`` (an OSError)
then, so callers can say which kernel option is missing instead of showing a bare
netlink error.

Functions over a `netlink.Netlink`, kept out of netlink.py: only the hooks of
VLAN-aware bridges load them.
"""

from __future__ import annotations

import _struct as struct  # see nlsocket.py

from .netlink import _IFINFOMSG, Netlink
from .nlsocket import _attr, _attr_items, _attrs, _nested, _u16_attr, _u32_attr

__all__ = [
    "BridgeVlan",
    "FEATURE_8021Q",
    "FEATURE_BRIDGE_VLAN_FILTERING",
    "MissingKernelFeature",
    "bridge_vlan_add",
    "bridge_vlan_del",
    "bridge_vlans",
]

# linux/rtnetlink.h, linux/if_link.h, linux/if_bridge.h
_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_RTM_GETLINK = 18
_RTM_SETLINK = 19
_IFLA_AF_SPEC = 26
_IFLA_EXT_MASK = 29
_RTEXT_FILTER_BRVLAN = 1 << 1
_AF_BRIDGE = 7
_IFLA_BRIDGE_FLAGS = 0
_IFLA_BRIDGE_VLAN_INFO = 2
_BRIDGE_FLAGS_SELF = 2
_BRIDGE_VLAN_INFO_PVID = 0x2
_BRIDGE_VLAN_INFO_UNTAGGED = 0x4
_BRIDGE_VLAN_INFO_RANGE_BEGIN = 0x8
_BRIDGE_VLAN_INFO_RANGE_END = 0x10
_VLAN_VID_MAX = 4094

_BRIDGE_VLAN_INFO = struct.Struct("=HH")  # flags, vid


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


def checked_vid(vid: int, low: int = 1) -> int:
    if not isinstance(vid, int) or isinstance(vid, bool) or not low <= vid <= _VLAN_VID_MAX:
        raise ValueError(f"invalid VLAN id: {vid!r} (expected {low}..{_VLAN_VID_MAX})")
    return vid


def _bridge_vlan(nl: Netlink, msg_type: int, index: int, vid: int, flags: int, self_: bool) -> None:
    if index <= 0:
        raise ValueError(f"invalid interface index: {index}")
    spec = []
    if self_:
        spec.append(_u16_attr(_IFLA_BRIDGE_FLAGS, _BRIDGE_FLAGS_SELF))
    spec.append(_attr(_IFLA_BRIDGE_VLAN_INFO, _BRIDGE_VLAN_INFO.pack(flags, checked_vid(vid))))
    payload = _IFINFOMSG.pack(_AF_BRIDGE, 0, index, 0, 0) + _nested(_IFLA_AF_SPEC, *spec)
    try:
        nl._ack(msg_type, 0, payload)
    except OSError as e:
        import errno  # here, not at the top: see nlsocket.py

        # EOPNOTSUPP also means "not a bridge port" (or a bridge without self_):
        # only a bridge that reports no default PVID proves the kernel lacks it.
        if e.errno == errno.EOPNOTSUPP and _lacks_vlan_filtering(nl, index):
            raise MissingKernelFeature(FEATURE_BRIDGE_VLAN_FILTERING, getattr(e, "extack", None)) from None
        raise


def _lacks_vlan_filtering(nl: Netlink, index: int) -> bool:
    link = nl.get_link_by_index(index)
    if link is not None and link.kind != "bridge" and link.master:
        link = nl.get_link_by_index(link.master)
    return link is not None and link.kind == "bridge" and link.vlan_default_pvid is None


def bridge_vlan_add(
    nl: Netlink, index: int, vid: int, *, pvid: bool = False, untagged: bool = False, self_: bool = False
) -> None:
    """`bridge vlan add dev INDEX vid VID [pvid] [untagged] [self]`.

    Without self_ the VLAN goes on the bridge port `index` (EOPNOTSUPP when it
    is not a port); with self_ on the bridge device `index` itself.  Adding a
    VID that is there updates its flags; a new PVID replaces the old one.  On a
    kernel without CONFIG_BRIDGE_VLAN_FILTERING the answer is EOPNOTSUPP:
    MissingKernelFeature(FEATURE_BRIDGE_VLAN_FILTERING).
    """
    flags = (_BRIDGE_VLAN_INFO_PVID if pvid else 0) | (_BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
    _bridge_vlan(nl, _RTM_SETLINK, index, vid, flags, self_)


def bridge_vlan_del(nl: Netlink, index: int, vid: int, *, self_: bool = False) -> None:
    """`bridge vlan del dev INDEX vid VID [self]`; a VID that is not there is fine."""
    _bridge_vlan(nl, _RTM_DELLINK, index, vid, 0, self_)


def bridge_vlans(nl: Netlink, index: int) -> list[BridgeVlan]:
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
    for mtype, _, msg in nl._dump(_RTM_GETLINK, payload):
        if mtype != _RTM_NEWLINK or _IFINFOMSG.unpack_from(msg, 0)[2] != index:
            continue
        spec = _attrs(msg, _IFINFOMSG.size).get(_IFLA_AF_SPEC)
        if spec is not None:
            vlans.update((v.vid, v) for v in _parse_bridge_vlans(spec))
    return [vlans[v] for v in sorted(vlans)]
