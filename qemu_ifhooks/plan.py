"""Pure planning: from a segment and the observed links to a list of operations.

Each operation (ops.py) is a small value that can say what it does as the equivalent
`ip` command; `apply.py` carries them out. Nothing here touches the kernel, so every
decision a hook makes can be tested with plain values. What only building a bridge or
tearing one down needs is in buildplan.py.
"""

from __future__ import annotations

from .errors import NotATapError, UnavailableError
from .netlink import Link
from .ops import BridgeVlanAdd, BridgeVlanDel, Op, SetDown, SetMaster, SetMtu, SetNoMaster, SetUp
from .record import Record

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Set

    from .bridgevlan import BridgeVlan
    from .configmodel import Segment
    from .portsecurity import Rule
    from .vxlan import VxlanScene


class Plan(Record):
    __slots__ = (
        "ops",  # a tuple of Op
        "notes",  # decisions worth telling the user (nothing to do, and why)
    )
    _defaults = {"ops": (), "notes": ()}


# --- names ----------------------------------------------------------------------------

def describe_link(link: Link) -> str:
    if link.kind == "tun":
        return "TUN device (layer 3)" if link.tun_type == "tun" else "tun device"
    if link.kind:
        return f"{link.kind} device"
    return "loopback device" if link.name == "lo" else "physical or unnamed-kind device"


def require_tap(tap: Link) -> None:
    if not tap.is_tap:
        raise NotATapError(f"{tap.name} is a {describe_link(tap)}, not a TAP; "
                           f"the hooks only attach the TAPs QEMU creates")


def kernel_lacks(feature: str) -> UnavailableError:
    """What to say when the running kernel cannot do what the config asks
    (bridgevlan.MissingKernelFeature, or an existing bridge without VLAN attributes)."""
    from .bridgevlan import FEATURE_8021Q

    if feature == FEATURE_8021Q:
        return UnavailableError("this kernel lacks 802.1Q VLAN support (CONFIG_VLAN_8021Q); "
                                "load it with 'modprobe 8021q'")
    return UnavailableError("this kernel lacks bridge VLAN filtering "
                            "(CONFIG_BRIDGE_VLAN_FILTERING), which a bridge shared by tagged "
                            "segments needs; use a kernel built with it, or give each "
                            "tagged segment a bridge of its own")


# --- 802.1Q subinterfaces of classic segments -------------------------------------------

MARK = "qemu-ifhooks"  # the alias prefix of the subinterfaces the hooks create


def vlan_mark(segment: Segment) -> str:
    """The alias that marks a subinterface as created for `segment`, so that `down`
    deletes only those (an admin's own uplink.N stays)."""
    return f"{MARK}: {segment.key}"


def made_by_hooks(link: Link) -> bool:
    return link.alias is not None and link.alias.startswith(f"{MARK}:")


def require_vlan_port(segment: Segment, port: Link, uplink: Link) -> None:
    """An existing <uplink>.<tag> is used only if it is that VLAN on that uplink."""
    if port.kind == "vlan" and port.vlan_id == segment.tag and port.link == uplink.index:
        return
    what = (f"VLAN {port.vlan_id} on ifindex {port.link}" if port.kind == "vlan"
            else f"a {describe_link(port)}")
    raise UnavailableError(f"{port.name} exists but is {what}, not VLAN {segment.tag} on "
                           f"{uplink.name}; rename or delete it, or change {segment.key}")


def require_vlan_filtering(segment: Segment, bridge: Link) -> None:
    """A VLAN-aware segment's existing bridge must filter VLANs already: turning it on
    would cut off every guest on the bridge that has no VLAN yet."""
    if bridge.vlan_default_pvid is None:  # the kernel reports it only when built with it
        from .bridgevlan import FEATURE_BRIDGE_VLAN_FILTERING

        raise kernel_lacks(FEATURE_BRIDGE_VLAN_FILTERING)
    if not bridge.vlan_filtering:
        raise UnavailableError(
            f"bridge {bridge.name} exists with VLAN filtering off, but {segment.key} shares "
            f"it with other tagged segments (a VLAN-aware bridge); turning filtering on "
            f"would cut off the guests already on it: turn it on when none are ('ip link "
            f"set dev {bridge.name} type bridge vlan_filtering 1 vlan_default_pvid 0'), or "
            f"delete it and let the hook create it")


# --- offloads ---------------------------------------------------------------------------

def offload_problem(uplink: str, gro: bool, lro: bool) -> Optional[str]:
    """The uplink's receive-offload fault and its fix, or None when GRO is on and LRO off.

    A bridge cannot forward LRO-merged packets; GRO is what lets guests receive merged."""
    fixes = []
    faults = []
    if lro:
        faults.append("LRO enabled")
        fixes.append("lro off")
    if not gro:
        faults.append("GRO disabled")
        fixes.append("gro on")
    if not faults:
        return None
    return (f"uplink {uplink} has {' and '.join(faults)}; "
            f"run 'ethtool -K {uplink} {' '.join(fixes)}'")


def check_offloads(segment: Segment, uplink: str, gro: bool, lro: bool) -> Optional[str]:
    """Raise under enforce; return the warning to log under warn."""
    problem = offload_problem(uplink, gro, lro)
    if problem is None or segment.offload_check == "off":
        return None
    if segment.offload_check == "enforce":
        raise UnavailableError(f'{problem} or set offload_check = "warn"')
    return problem


# --- ifup -------------------------------------------------------------------------------

def uplink_needs_attaching(uplink: Optional[Link], bridge: Optional[Link]) -> bool:
    return uplink is not None and (bridge is None or uplink.master != bridge.index)


def plan_bridge(segment: Segment, bridge: Optional[Link], uplink: Optional[Link],
                uplink_addresses: Sequence[str] = (), machine_id: bytes = b"",
                create: Optional[bool] = None, *, vlan_port: Optional[Link] = None,
                uplink_vlans: Optional[Sequence[BridgeVlan]] = None,
                vxlan: Optional[VxlanScene] = None) -> Plan:
    """Make the segment's bridge exist, with its uplink port, and up. `create` overrides
    the segment's own setting (`qemu-ifhooks up` creates whatever the segment says).

    The uplink port is the uplink, or a classic segment's subinterface `vlan_port`
    (None while it does not exist); `uplink_addresses` are the port's global addresses,
    `uplink_vlans` its VLANs when it is already a port of a VLAN-aware bridge. A segment
    that spans hosts has a VXLAN link (vxlan.py) instead, observed in `vxlan`."""
    port = vlan_port if segment.classic else uplink
    require_buildable(segment, bridge, uplink, port, uplink_addresses, create)
    mtu = segment.mtu
    if segment.vxlan is not None:
        from .vxlan import bridge_mtu, require_vxlan_buildable

        assert vxlan is not None
        require_vxlan_buildable(segment, vxlan)
        mtu = bridge_mtu(segment, vxlan.underlay)
    ops: List[Op] = []
    if segment.classic and port is None:
        assert segment.uplink_port is not None and uplink is not None and segment.tag
        from .buildops import CreateVlan, SetAlias

        # First of all: a kernel without 802.1Q refuses it before anything has changed.
        ops += [CreateVlan(segment.uplink_port, uplink.name, segment.tag),
                SetAlias(segment.uplink_port, vlan_mark(segment))]
    if bridge is None:
        from .buildplan import new_bridge_ops

        ops += new_bridge_ops(segment, port or uplink, machine_id, mtu)
    elif not bridge.is_up:
        from .buildplan import pinned_mtu_ops

        # The hooks bring a bridge up last: one that is down may be half-built (a hook
        # killed midway), so give it the pinned MTU creation would have.
        ops += pinned_mtu_ops(segment, bridge.mtu, mtu)
    ops += uplink_port_ops(segment, bridge, uplink, port, uplink_vlans)
    if segment.vxlan is not None:
        from .vxlan import plan_vxlan_port

        ops += plan_vxlan_port(segment, bridge, vxlan)
    if bridge is None or not bridge.is_up:
        ops.append(SetUp(segment.bridge))
    return Plan(tuple(ops))


def require_buildable(segment: Segment, bridge: Optional[Link], uplink: Optional[Link],
                      port: Optional[Link], port_addresses: Sequence[str],
                      create: Optional[bool]) -> None:
    """Everything plan_bridge refuses, before it plans anything."""
    name = segment.bridge
    if segment.uplink is not None and uplink is None:
        raise UnavailableError(f"uplink {segment.uplink} does not exist")
    if port is not None and uplink is not None and segment.classic:
        require_vlan_port(segment, port, uplink)
    if bridge is None and not (segment.create if create is None else create):
        raise UnavailableError(f"bridge {name} does not exist and {segment.key} has "
                               f"create = false; run 'qemu-ifhooks up {segment.vlan}'")
    if bridge is not None and bridge.kind != "bridge":
        raise UnavailableError(f"{name} exists but is a {describe_link(bridge)}, not a bridge")
    if bridge is not None and segment.vlan_aware:
        require_vlan_filtering(segment, bridge)
    if port is not None and uplink_needs_attaching(port, bridge):
        if port.master:
            raise UnavailableError(f"uplink {port.name} is already a port of another "
                                   f"master (ifindex {port.master}); not moving it")
        if port_addresses and not segment.allow_addressed_uplink:
            raise UnavailableError(
                f"uplink {port.name} carries {', '.join(port_addresses)}; enslaving it "
                f"would cut the host off from them: move them to {name}, or set "
                f"allow_addressed_uplink = true in {segment.key}")


def uplink_port_ops(segment: Segment, bridge: Optional[Link], uplink: Optional[Link],
                    port: Optional[Link],
                    port_vlans: Optional[Sequence[BridgeVlan]]) -> List[Op]:
    """The uplink port in the bridge, in every VLAN of a VLAN-aware bridge, and up."""
    name = segment.uplink_port
    if name is None:
        return []
    ops: List[Op] = []
    present: Set[int] = set()
    if port is None or uplink_needs_attaching(port, bridge):
        ops.append(SetMaster(name, segment.bridge))
    else:
        present = {vlan.vid for vlan in port_vlans or ()}
    # Tagged, every VLAN of the bridge; a VID the admin gave other flags stays as is.
    ops += [BridgeVlanAdd(name, vid) for vid in segment.bridge_vids if vid not in present]
    if segment.classic and uplink is not None and not uplink.is_up:
        ops.append(SetUp(uplink.name))  # the kernel brings a VLAN device up only on an up parent
    if port is None or not port.is_up:
        ops.append(SetUp(name))
    return ops


def require_not_elsewhere(tap: Link, bridge: Optional[Link]) -> None:
    """A TAP on another master (another bridge, a bond) is not ours to move."""
    if tap.master and (bridge is None or tap.master != bridge.index):
        raise UnavailableError(f"{tap.name} is already a port of another master "
                               f"(ifindex {tap.master}); not moving it")


def plan_attach(segment: Segment, tap: Link, bridge: Link,
                tap_vlans: Sequence[BridgeVlan] = (), *, rules: Sequence[Rule] = (),
                has_rules: bool = False, has_shaping: bool = False) -> Plan:
    """Enslave the TAP to the (existing) bridge; nothing when it is already done.
    `tap_vlans`: the TAP's VLANs, when it is already a port of a VLAN-aware bridge.
    `rules`: what the TAP may send (portsecurity.py), when the segment guards its
    ports; `has_rules`, `has_shaping`: rules or rate limits of a TAP of this name are
    there already (a killed VM's), to go when the segment has none."""
    require_tap(tap)
    require_not_elsewhere(tap, bridge)
    ops: List[Op] = []
    # The rules first: no frame of the guest crosses the bridge before they hold, and
    # whatever a killed VM's TAP of the same name had is replaced (or removed).
    if rules or has_rules:
        from .guardops import RemovePortRules, SetPortRules  # only guarded TAPs load them

        ops.append(SetPortRules(tap.name, tuple(rules)) if rules else RemovePortRules(tap.name))
    # MTU first: a port with a smaller MTU would lower an auto-MTU bridge.
    if tap.mtu != bridge.mtu:
        ops.append(SetMtu(tap.name, bridge.mtu))
    joining = tap.master != bridge.index
    if joining:
        ops.append(SetMaster(tap.name, segment.bridge))
    if segment.isolated:
        from .guardops import SetPortIsolated

        ops.append(SetPortIsolated(tap.name, True))
    shaped = segment.guest_rx_mbit or segment.guest_tx_mbit
    if shaped or has_shaping:
        from .guardops import ShapeGuest, Unshape

        ops.append(ShapeGuest(tap.name, segment.guest_rx_mbit, segment.guest_tx_mbit) if shaped
                   else Unshape(tap.name))
    if segment.vlan_aware:
        if joining:  # a new port gets the bridge's default PVID, if it has one
            from .bridgevlan import BridgeVlan

            default = bridge.vlan_default_pvid
            tap_vlans = [BridgeVlan(default, True, True)] if default else []
        # Before the TAP comes up, so that no frame passes in a VLAN it is not for.
        ops += plan_tap_vlans(segment, tap.name, tap_vlans)
    if not tap.is_up:
        ops.append(SetUp(tap.name))
    return Plan(tuple(ops))


def plan_tap_vlans(segment: Segment, tap: str, have: Sequence[BridgeVlan]) -> List[Op]:
    """A TAP on a VLAN-aware bridge is in its segment's VLAN, untagged, and in the trunk
    VLANs, tagged; in no other (no VLAN 1 leak)."""
    from .bridgevlan import BridgeVlan

    assert segment.tag is not None
    want = {segment.tag: BridgeVlan(segment.tag, True, True)}
    want.update((vid, BridgeVlan(vid, False, False)) for vid in segment.trunk)
    has = {vlan.vid: vlan for vlan in have}
    ops: List[Op] = [BridgeVlanAdd(tap, vid, pvid_untagged=vlan.pvid)
                     for vid, vlan in want.items() if has.get(vid) != vlan]
    ops += [BridgeVlanDel(tap, vid) for vid in sorted(has) if vid not in want]
    return ops


# --- ifdown -----------------------------------------------------------------------------

def plan_detach(segment: Segment, tap: Optional[Link], bridge: Optional[Link],
                leftovers: Sequence[Op] = ()) -> Plan:
    """`leftovers`: what removes the TAP's rules and rate limits, when it has any; they
    go too (also when the TAP itself is gone: the ifb devices outlive it)."""
    removal = tuple(leftovers)
    if tap is None:
        return Plan(removal, notes=("already gone (QEMU closed it)",))
    require_tap(tap)
    if tap.master and (bridge is None or tap.master != bridge.index):
        return Plan(notes=(f"on another master (ifindex {tap.master}), not {segment.bridge}; "
                           f"left alone",))
    ops: List[Op] = []
    if tap.master:
        ops.append(SetNoMaster(tap.name))
    if tap.is_up:
        ops.append(SetDown(tap.name))
    return Plan(tuple(ops) + removal)
