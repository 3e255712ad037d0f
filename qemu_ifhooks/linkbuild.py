"""rtnetlink requests that build and tear down: creating and deleting links, bridge
port flags, and the listings of links and addresses that building, tearing down and
the admin commands read.

Functions over a `netlink.Netlink`, kept out of netlink.py so that it stays the small
codec of the links every hook handles: a hook on an existing bridge loads none of this.
"""

from __future__ import annotations

import _socket as socket  # not `socket`: see nlsocket.py
import _struct as struct  # see nlsocket.py

from .bridgevlan import FEATURE_8021Q, FEATURE_BRIDGE_VLAN_FILTERING, MissingKernelFeature, checked_vid
from .netlink import _IFINFOMSG, Link, Netlink, _ifname, _parse_link
from .nlsocket import (_NLM_F_CREATE, _NLM_F_EXCL, _attr, _attrs, _nested, _u16_attr,
                       _u32_attr)

# linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h, linux/if_bridge.h
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
_IFLA_LINKINFO = 18
_IFLA_INFO_KIND = 1
_IFLA_INFO_DATA = 2
_IFLA_BR_FORWARD_DELAY = 1
_IFLA_BR_STP_STATE = 5
_IFLA_BR_VLAN_FILTERING = 7
_IFLA_BR_VLAN_DEFAULT_PVID = 39
_IFLA_VLAN_ID = 1
_AF_BRIDGE = 7
_IFLA_PROTINFO = 12
_IFLA_BRPORT_FLAGS = {"learning": 8, "neigh_suppress": 32, "isolated": 33}  # IFLA_BRPORT_*
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_RT_SCOPE_UNIVERSE = 0
_USER_HZ = 100  # the bridge speaks clock_t (1/100 s), whatever the kernel HZ

_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index


def create_bridge(
    nl: Netlink,
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
        data.append(_u16_attr(_IFLA_BR_VLAN_DEFAULT_PVID, checked_vid(default_pvid, low=0)))
    attrs.append(_nested(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, b"bridge"), _nested(_IFLA_INFO_DATA, *data)))
    payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(attrs)
    try:
        nl._ack(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, payload)
    except OSError as e:
        import errno  # here, not at the top: see nlsocket.py

        if vlan_filtering and e.errno == errno.EOPNOTSUPP:
            raise MissingKernelFeature(FEATURE_BRIDGE_VLAN_FILTERING, getattr(e, "extack", None)) from None
        raise


def create_vlan(nl: Netlink, name: str, *, parent: int, vid: int, mtu: int | None = None) -> None:
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
    data = _nested(_IFLA_INFO_DATA, _u16_attr(_IFLA_VLAN_ID, checked_vid(vid)))
    attrs.append(_nested(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, b"vlan"), data))
    payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(attrs)
    try:
        nl._ack(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, payload)
    except OSError as e:
        import errno  # here, not at the top: see nlsocket.py

        extack = getattr(e, "extack", None)
        if e.errno == errno.EOPNOTSUPP and extack == "Unknown device type":
            raise MissingKernelFeature(FEATURE_8021Q, extack) from None
        raise


def create_link(nl: Netlink, name: str, kind: str) -> None:
    """Create a link of a kind that needs no settings (ifb, dummy), left down."""
    info = _nested(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, kind.encode() + b"\0"))
    payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _ifname(name)) + info
    nl._ack(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, payload)


def delete_link(nl: Netlink, index: int) -> None:
    if index <= 0:
        raise ValueError(f"invalid interface index: {index}")
    nl._ack(_RTM_DELLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))


def set_bridge_port(nl: Netlink, index: int, **flags: bool) -> None:
    """Set bridge port flags of a port (`bridge link set dev X isolated on`):
    isolated, learning, neigh_suppress."""
    if index <= 0:
        raise ValueError(f"invalid interface index: {index}")
    attrs = [_attr(_IFLA_BRPORT_FLAGS[name], b"\x01" if on else b"\x00") for name, on in flags.items()]
    payload = _IFINFOMSG.pack(_AF_BRIDGE, 0, index, 0, 0) + _nested(_IFLA_PROTINFO, *attrs)
    nl._ack(_RTM_SETLINK, 0, payload)


def list_links(nl: Netlink, master: int | None = None) -> list[Link]:
    payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + nl._ext_mask_attr()
    if master:
        payload += _u32_attr(_IFLA_MASTER, master)
    links = [_parse_link(m) for t, _, m in nl._dump(_RTM_GETLINK, payload) if t == _RTM_NEWLINK]
    if master is not None:
        # Kernels before 4.4 ignore the filter, and 0 ("no master") is never filtered.
        links = [link for link in links if link.master == master]
    return links


def global_addresses(nl: Netlink, index: int) -> list[str]:
    """Universe-scope addresses of one link as "addr/prefixlen" text."""
    # With strict checking the kernel filters by ifa_index; otherwise it is ignored.
    payload = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, index)
    try:
        replies = nl._dump(_RTM_GETADDR, payload)
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
