"""Planning what builds a segment's bridge and what tears it down (see plan.py, whose
plan_bridge calls on this only for a bridge that is missing or half-built): the new
bridge's address and pinned MTU, the bridge a dry run plans against before it exists,
and `qemu-ifhooks down`'s deletions. A hook on an existing bridge loads none of this."""

from __future__ import annotations

from .errors import UnavailableError
from .netlink import IFF_UP, Link
from .ops import SetMtu, SetNoMaster
from .plan import Plan, describe_link, made_by_hooks

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import List, Optional, Sequence

    from .configmodel import Segment
    from .ops import Op


BRIDGE_DEFAULT_MTU = 1500  # what the kernel gives a new bridge (ETH_DATA_LEN)
MIN_MTU = 68


def derived_bridge_mac(bridge: str, machine_id: bytes) -> bytes:
    """A stable, locally administered unicast MAC for a bridge without an uplink.

    Keyed on the host's machine-id as well as the name, so that br0 on two hosts that
    share a segment does not get one address."""
    import hashlib  # only bridge creation needs it

    digest = bytearray(hashlib.sha256(b"qemu-ifhooks\0" + machine_id + b"\0" +
                                      bridge.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFE) | 0x02
    return bytes(digest)


def new_bridge_ops(segment: Segment, port: Optional[Link], machine_id: bytes,
                   mtu: Optional[int] = None) -> List[Op]:
    from .buildops import CreateBridge

    name = segment.bridge
    # A fixed address: a bridge otherwise takes its lowest port MAC, which changes as
    # guests come and go and breaks the host's ARP entries on the segment. (`port` is
    # the uplink port, or the uplink while its subinterface, which will have the
    # uplink's address, does not exist yet.)
    address = port.address if port and port.address else derived_bridge_mac(name, machine_id)
    return [CreateBridge(name, address, segment.stp, segment.forward_delay, segment.vlan_aware),
            *pinned_mtu_ops(segment, BRIDGE_DEFAULT_MTU, mtu)]


def pinned_mtu_ops(segment: Segment, mtu: int, want: Optional[int] = None) -> List[Op]:
    """The configured MTU (or `want`: a VXLAN segment's), pinned, on the bridge whose
    MTU is now `mtu`. Setting it pins it (no port can lower it), but only when it
    changes: the kernel skips a change to the same value, so first step off it."""
    want = segment.mtu if want is None else want
    if want is None:
        return []
    ops: List[Op] = []
    if want == mtu:
        ops.append(SetMtu(segment.bridge, mtu - 1 if mtu > MIN_MTU else mtu + 1))
    ops.append(SetMtu(segment.bridge, want))
    return ops


PREDICTED_INDEX = -1  # a bridge not created yet has no ifindex


def predicted_bridge(plan: Plan, uplink: Optional[Link]) -> Link:
    """The bridge as `plan` (plan_bridge's, for a missing bridge) leaves it, so that a dry
    run can plan the TAP against it: the planned address, up, and the pinned MTU or else
    the uplink's (an auto-MTU bridge follows its ports)."""
    from .buildops import CreateBridge

    create = next(op for op in plan.ops if isinstance(op, CreateBridge))
    pinned = [op.mtu for op in plan.ops if isinstance(op, SetMtu) and op.ifname == create.bridge]
    mtu = pinned[-1] if pinned else uplink.mtu if uplink is not None else BRIDGE_DEFAULT_MTU
    return Link(index=PREDICTED_INDEX, name=create.bridge, kind="bridge", tun_type=None,
                flags=IFF_UP, mtu=mtu, master=0, address=create.address, operstate=0,
                vlan_filtering=create.vlan_aware,
                vlan_default_pvid=0 if create.vlan_aware else None)


def plan_teardown(segment: Segment, bridge: Optional[Link], ports: Sequence[Link],
                  force: bool, vlan_port: Optional[Link] = None,
                  vxlan_port: Optional[Link] = None) -> Plan:
    """Delete the bridge, refusing while ports other than its uplink port remain (VMs
    still running, or ports someone else added) unless forced; then a classic segment's
    subinterface (`vlan_port`) or a VXLAN segment's link (`vxlan_port`), if the hooks
    created it and no bridge holds it."""
    from .buildops import DeleteLink

    ops: List[Op] = []
    notes: List[str] = []
    if bridge is not None:
        if bridge.kind != "bridge":
            raise UnavailableError(f"{bridge.name} exists but is a {describe_link(bridge)}, "
                                   f"not a bridge; not deleting it")
        own = (segment.uplink_port, segment.vxlan_port)
        foreign = sorted(p.name for p in ports if p.name not in own)
        if foreign and not force:
            raise UnavailableError(f"{bridge.name} still has ports {', '.join(foreign)} "
                                   f"(running VMs?); stop them or pass --force")
        ops += [SetNoMaster(p.name) for p in ports if p.name == segment.uplink_port]
        ops.append(DeleteLink(bridge.name))
    for made in (vlan_port if segment.classic else None, vxlan_port):
        if made is None:
            continue
        free = not made.master or (bridge is not None and made.master == bridge.index)
        if not made_by_hooks(made):
            notes.append(f"{made.name} left in place: qemu-ifhooks did not create it")
        elif not free:
            notes.append(f"{made.name} left in place: a port of another master "
                         f"(ifindex {made.master})")
        else:
            ops.append(DeleteLink(made.name))
    return Plan(tuple(ops), tuple(notes))
