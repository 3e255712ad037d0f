"""Segments that span hosts: a segment's `vxlan` table, and the pure planning of the
VXLAN port that joins its bridge to the other hosts.

The bridge's port to the world is `vxlan<vni>` instead of an uplink. It is created with
`dev UNDERLAY` (the kernel then sizes its MTU and sends multicast out of it) and
dstport 4789. How it finds the other hosts is one of three: `remotes` (static
head-end replication: one all-zeros fdb entry per peer, which qemu-ifhooks keeps in
step with the config), `group` (multicast: the kernel joins the group), or `evpn`
(FRR's zebra learns the VTEPs and MACs through BGP and installs them; the kernel and
the bridge must not learn on this port, or stale entries would fight zebra's).
"""

from __future__ import annotations

import _socket as socket  # not `socket`: see nlsocket.py

from .buildops import SetAlias
from .configmodel import EvpnConfig, VxlanConfig
from .errors import UnavailableError
from .ops import Op, SetMaster, SetMtu, SetUp
from .plan import describe_link, vlan_mark
from .record import Record
from .vxlanops import CreateVxlan, FdbAppend, FdbDel, SetBridgePort

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Any, Callable, Collection, Dict, List, Optional, Sequence

    from .configmodel import Segment
    from .netlink import Link

MAX_VNI = (1 << 24) - 1
# Outer Ethernet (14) + IP (20, or 40 for IPv6) + UDP (8) + VXLAN (8) headers.
OVERHEAD = {socket.AF_INET: 50, socket.AF_INET6: 70}


def ip_family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def overhead(local: str) -> int:
    return OVERHEAD[ip_family(local)]


# --- config -----------------------------------------------------------------------------

def normal_address(text: Any) -> Optional[str]:
    """An IPv4 or IPv6 address in its canonical text form, or None."""
    if not isinstance(text, str):
        return None
    try:
        family = ip_family(text)
        return socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        return None


def is_multicast(address: str) -> bool:
    if ip_family(address) == socket.AF_INET6:
        return address.lower().startswith("ff")
    return 224 <= int(address.split(".")[0]) <= 239


VXLAN_KEYS = ("vni", "local", "dev", "remotes", "group", "evpn")


def parse_vxlan(segment: Dict[str, Any], segment_keypath: str,
                fail: Callable[[str, str], Exception],
                interface: Callable[[Any], str]) -> VxlanConfig:
    """Validate the vxlan table of a segment's table; `fail(keypath, message)` makes
    the error, `interface` checks an interface name (raising config's own _Invalid)."""
    for key in ("uplink", "tag"):
        if key in segment:
            raise fail(f"{segment_keypath}.{key}",
                       f"a segment with vxlan reaches other hosts through its VXLAN link, "
                       f"which carries it untagged: remove {key} (or vxlan)")
    value, keypath = segment["vxlan"], f"{segment_keypath}.vxlan"
    for key in value:
        if key not in VXLAN_KEYS:
            raise fail(f"{keypath}.{key}", f"unknown key (known: {', '.join(VXLAN_KEYS)})")
    for key in ("vni", "local", "dev"):
        if key not in value:
            raise fail(f"{keypath}.{key}", "missing: a vxlan table needs vni, local and dev")
    vni = value["vni"]
    if isinstance(vni, bool) or not isinstance(vni, int) or not 1 <= vni <= MAX_VNI:
        raise fail(f"{keypath}.vni", f"expected a VNI 1..{MAX_VNI}, got {vni!r}")
    local = normal_address(value["local"])
    if local is None or is_multicast(local):
        raise fail(f"{keypath}.local", f"expected this host's unicast IPv4 or IPv6 address "
                                       f"on the underlay, got {value['local']!r}")
    try:
        dev = interface(value["dev"])
    except Exception as invalid:  # config._Invalid: what an interface name must be
        raise fail(f"{keypath}.dev", f"expected {invalid}") from None
    chosen = [key for key in ("remotes", "group") if key in value]
    evpn = value.get("evpn", False)
    if not isinstance(evpn, bool):
        raise fail(f"{keypath}.evpn", f"expected true or false, got {evpn!r}")
    if evpn:
        chosen.append("evpn")
    if len(chosen) != 1:
        what = f"got {' and '.join(chosen)}" if chosen else "got none"
        raise fail(keypath, f"needs exactly one of remotes = [...] (static peers), "
                            f"group = \"239.1.1.N\" (multicast) or evpn = true; {what}")
    remotes = parse_remotes(value.get("remotes", []), local, f"{keypath}.remotes", fail)
    group = None
    if "group" in value:
        group = normal_address(value["group"])
        if group is None or not is_multicast(group) or ip_family(group) != ip_family(local):
            raise fail(f"{keypath}.group", f"expected a multicast address of local's family "
                                           f"(239.1.1.N), got {value['group']!r}")
    return VxlanConfig(vni, local, dev, remotes, group, evpn)


def parse_remotes(value: Any, local: str, keypath: str,
                  fail: Callable[[str, str], Exception]) -> tuple:
    if not isinstance(value, list):
        raise fail(keypath, "expected a list of the other hosts' underlay addresses")
    out: List[str] = []
    for item in value:
        address = normal_address(item)
        if address is None or is_multicast(address) or ip_family(address) != ip_family(local):
            raise fail(keypath, f"expected unicast addresses of local's family, got {item!r}")
        if address == local:
            raise fail(keypath, f"{address} is local: list the other hosts")
        if address in out:
            raise fail(keypath, f"{address} is listed twice")
        out.append(address)
    return tuple(out)


def check_vnis(segments: Sequence[Segment], fail: Callable[[str, str], Exception]) -> None:
    """One VNI per bridge on a host; VXLAN link names clear of bridges and uplinks."""
    bridges = {s.bridge for s in segments}
    taken = bridges | {s.uplink_port for s in segments if s.uplink}
    owner: Dict[int, Segment] = {}
    for segment in segments:
        vx = segment.vxlan
        if vx is None:
            continue
        first = owner.setdefault(vx.vni, segment)
        if first.bridge != segment.bridge:
            raise fail(f"{segment.key}.vxlan.vni", f"VNI {vx.vni} is already {first.key}'s "
                                                   f"(bridge {first.bridge}); each VNI is one "
                                                   f"segment")
        if vx.port in taken or vx.dev in bridges:
            name = vx.port if vx.port in taken else vx.dev
            raise fail(f"{segment.key}.vxlan", f"{name} is also configured as a bridge or "
                                               f"uplink")


# --- [evpn] ----------------------------------------------------------------------------

MAX_ASN = (1 << 32) - 1
EVPN_KEYS = ("asn", "peers", "router_id", "pathspace")
_PATHSPACE_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"


def parse_evpn(table: Dict[str, Any], keypath: str,
               fail: Callable[[str, str], Exception]) -> EvpnConfig:
    for key in table:
        if key not in EVPN_KEYS:
            raise fail(f"{keypath}.{key}", f"unknown key (known: {', '.join(EVPN_KEYS)})")
    if "asn" not in table:
        raise fail(f"{keypath}.asn", "missing: the BGP AS number of the hosts")
    asn = table["asn"]
    if isinstance(asn, bool) or not isinstance(asn, int) or not 1 <= asn <= MAX_ASN:
        raise fail(f"{keypath}.asn", f"expected an AS number 1..{MAX_ASN}, got {asn!r}")
    peers = table.get("peers")
    if not isinstance(peers, list) or not peers:
        raise fail(f"{keypath}.peers", "expected a non-empty list of the other hosts' "
                                       "underlay addresses")
    normal: List[str] = []
    for item in peers:
        address = normal_address(item)
        if address is None or is_multicast(address):
            raise fail(f"{keypath}.peers", f"expected unicast addresses, got {item!r}")
        if address in normal:
            raise fail(f"{keypath}.peers", f"{address} is listed twice")
        normal.append(address)
    router_id = table.get("router_id")
    if router_id is not None:
        router_id = normal_address(router_id)
        if router_id is None or ip_family(router_id) != ip_family("0.0.0.0"):
            raise fail(f"{keypath}.router_id", f"expected an IPv4 address, got "
                                               f"{table['router_id']!r}")
    pathspace = table.get("pathspace")
    if pathspace is not None and (not isinstance(pathspace, str) or not pathspace or
                                  pathspace.strip(_PATHSPACE_CHARACTERS)):
        raise fail(f"{keypath}.pathspace", f"expected the name of an FRR instance (vtysh -N "
                                           f"NAME), got {pathspace!r}")
    return EvpnConfig(asn, tuple(normal), router_id, pathspace)


# --- planning ---------------------------------------------------------------------------

class VxlanScene(Record):
    """What plan_vxlan looks at: the kernel's side of one VXLAN segment."""

    __slots__ = (
        "port",  # vxlannl.Vxlan, or None while vxlan<vni> does not exist
        "underlay",  # netlink.Link, or None when missing
        "flood",  # the all-zeros fdb destinations now (static remotes only)
        "addresses",  # the host's addresses, read only while the port is to be created
    )
    _defaults = {"flood": (), "addresses": ()}


def bridge_mtu(segment: Segment, underlay: Optional[Link]) -> Optional[int]:
    """The MTU the bridge is pinned to: the configured one, else what the underlay
    carries once the VXLAN headers are added (1450 on a 1500 underlay)."""
    if segment.mtu is not None or underlay is None:
        return segment.mtu
    return underlay.mtu - overhead(segment.vxlan.local)


def mtu_problem(segment: Segment, underlay: Link) -> Optional[str]:
    """Why the underlay cannot carry the configured MTU, or None."""
    vx = segment.vxlan
    if segment.mtu is None or segment.mtu + overhead(vx.local) <= underlay.mtu:
        return None
    return (f"underlay {underlay.name} has MTU {underlay.mtu}, which carries at most "
            f"{underlay.mtu - overhead(vx.local)} on {vx.port} ({overhead(vx.local)} bytes "
            f"of VXLAN headers), but {segment.key} has mtu = {segment.mtu}: raise "
            f"{underlay.name}'s MTU to {segment.mtu + overhead(vx.local)} or lower mtu")


def require_vxlan_buildable(segment: Segment, scene: VxlanScene) -> None:
    vx = segment.vxlan
    if scene.underlay is None:
        raise UnavailableError(f"underlay {vx.dev} of {segment.key}.vxlan does not exist")
    problem = mtu_problem(segment, scene.underlay)
    if problem:
        raise UnavailableError(problem)
    port = scene.port
    if port is None:
        if vx.local not in scene.addresses:
            raise UnavailableError(f"{segment.key}.vxlan.local {vx.local} is not an address "
                                   f"of this host; add it to {vx.dev} or fix the config")
        return
    if port.link.kind != "vxlan":
        raise UnavailableError(f"{vx.port} exists but is a {describe_link(port.link)}, "
                               f"not a VXLAN link; rename or delete it")
    differ = port.differences(vx.vni, vx.local, scene.underlay.index, vx.group, not vx.evpn)
    if differ:
        raise UnavailableError(f"{vx.port} exists with {', '.join(differ)}; delete it "
                               f"('ip link del {vx.port}') and let qemu-ifhooks create it")


def plan_vxlan_port(segment: Segment, bridge: Optional[Link], scene: VxlanScene) -> List[Op]:
    """Create vxlan<vni> if missing (its alias marks it as made by the hooks, so that
    `down` deletes only those), make it a port of the bridge with EVPN's port flags,
    keep the static flood list in step, and bring it up."""
    require_vxlan_buildable(segment, scene)
    vx, port = segment.vxlan, scene.port
    assert scene.underlay is not None
    ops: List[Op] = []
    if port is None:
        ops += [CreateVxlan(vx.port, vx.vni, vx.local, vx.dev, vx.group, not vx.evpn,
                            segment.mtu),
                SetAlias(vx.port, vlan_mark(segment))]
    elif segment.mtu is not None and port.link.mtu != segment.mtu:
        ops.append(SetMtu(vx.port, segment.mtu))
    if port is None or bridge is None or port.link.master != bridge.index:
        if port is not None and port.link.master:
            raise UnavailableError(f"{vx.port} is already a port of another master "
                                   f"(ifindex {port.link.master}); not moving it")
        ops.append(SetMaster(vx.port, segment.bridge))
        if vx.evpn:
            ops.append(SetBridgePort(vx.port, learning=False, neigh_suppress=True))
    if not vx.evpn and not vx.group:
        ops += plan_flood(vx.port, vx.remotes, scene.flood if port is not None else ())
    if port is None or not port.link.is_up:
        ops.append(SetUp(vx.port))
    return ops


def plan_flood(port: str, remotes: Sequence[str], flood: Collection[str]) -> List[Op]:
    """The static flood list in step with `remotes`: new peers added, dropped ones
    removed (an all-zeros entry qemu-ifhooks did not list is a dropped peer: with static
    remotes nothing else installs them)."""
    ops: List[Op] = [FdbAppend(port, dst) for dst in remotes if dst not in flood]
    ops += [FdbDel(port, dst) for dst in sorted(flood) if dst not in remotes]
    return ops
