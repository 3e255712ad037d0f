"""Pure planning: from a segment and the observed links to a list of operations.

Each operation is a small value that can say what it does as the equivalent `ip`
command; `apply.py` carries them out. Nothing here touches the kernel, so every
decision a hook makes can be tested with plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

from .config import Segment
from .errors import ConfigError, NotATapError, UnavailableError
from .netlink import IFF_UP, Link


BRIDGE_DEFAULT_MTU = 1500  # what the kernel gives a new bridge (ETH_DATA_LEN)


def mac_text(address: bytes) -> str:
    return ":".join(f"{b:02x}" for b in address)


@dataclass(frozen=True)
class CreateBridge:
    bridge: str
    address: bytes
    stp: bool
    forward_delay: int  # seconds

    def command(self) -> str:
        return (f"ip link add {self.bridge} address {mac_text(self.address)} type bridge "
                f"stp_state {int(self.stp)} forward_delay {self.forward_delay * 100}")


@dataclass(frozen=True)
class SetMtu:
    ifname: str
    mtu: int

    def command(self) -> str:
        return f"ip link set dev {self.ifname} mtu {self.mtu}"


@dataclass(frozen=True)
class SetMaster:
    ifname: str
    master: str

    def command(self) -> str:
        return f"ip link set dev {self.ifname} master {self.master}"


@dataclass(frozen=True)
class SetNoMaster:
    ifname: str

    def command(self) -> str:
        return f"ip link set dev {self.ifname} nomaster"


@dataclass(frozen=True)
class SetUp:
    ifname: str

    def command(self) -> str:
        return f"ip link set dev {self.ifname} up"


@dataclass(frozen=True)
class SetDown:
    ifname: str

    def command(self) -> str:
        return f"ip link set dev {self.ifname} down"


@dataclass(frozen=True)
class DeleteLink:
    ifname: str

    def command(self) -> str:
        return f"ip link del dev {self.ifname}"


Op = Union[CreateBridge, SetMtu, SetMaster, SetNoMaster, SetUp, SetDown, DeleteLink]


@dataclass(frozen=True)
class Plan:
    ops: Tuple[Op, ...] = ()
    notes: Tuple[str, ...] = ()  # decisions worth telling the user (nothing to do, and why)


# --- names and addresses --------------------------------------------------------------

def derived_bridge_mac(bridge: str, machine_id: bytes) -> bytes:
    """A stable, locally administered unicast MAC for a bridge without an uplink.

    Keyed on the host's machine-id as well as the name, so that br0 on two hosts that
    share a segment does not get one address."""
    import hashlib  # only bridge creation needs it

    digest = bytearray(hashlib.sha256(b"qemu-ifhooks\0" + machine_id + b"\0" +
                                      bridge.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFE) | 0x02
    return bytes(digest)


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


def require_supported(segment: Segment) -> None:
    if segment.tag is not None:
        raise ConfigError(f"{segment.key}.tag: 802.1Q tags are not supported yet; "
                          f"remove the tag or give the segment an untagged uplink")


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
                create: Optional[bool] = None) -> Plan:
    """Make the segment's bridge exist, with its uplink, and up. `create` overrides the
    segment's own setting (`qemu-ifhooks up` creates whatever the segment says)."""
    ops: List[Op] = []
    name = segment.bridge
    if segment.uplink is not None and uplink is None:
        raise UnavailableError(f"uplink {segment.uplink} does not exist")
    if bridge is None:
        if not (segment.create if create is None else create):
            raise UnavailableError(f"bridge {name} does not exist and {segment.key} has "
                                   f"create = false; run 'qemu-ifhooks up {segment.vlan}'")
        # A fixed address: a bridge otherwise takes its lowest port MAC, which changes
        # as guests come and go and breaks the host's ARP entries on the segment.
        address = uplink.address if uplink and uplink.address else \
            derived_bridge_mac(name, machine_id)
        ops.append(CreateBridge(name, address, segment.stp, segment.forward_delay))
        if segment.mtu is not None:
            # Setting the MTU after creation pins it (no port can lower it), but only
            # when it changes: the kernel skips a change to the same value, so first
            # step off a new bridge's default MTU.
            if segment.mtu == BRIDGE_DEFAULT_MTU:
                ops.append(SetMtu(name, BRIDGE_DEFAULT_MTU - 1))
            ops.append(SetMtu(name, segment.mtu))
    elif bridge.kind != "bridge":
        raise UnavailableError(f"{name} exists but is a {describe_link(bridge)}, not a bridge")
    if uplink is not None and uplink_needs_attaching(uplink, bridge):
        if uplink.master:
            raise UnavailableError(f"uplink {uplink.name} is already a port of another "
                                   f"master (ifindex {uplink.master}); not moving it")
        if uplink_addresses and not segment.allow_addressed_uplink:
            raise UnavailableError(
                f"uplink {uplink.name} carries {', '.join(uplink_addresses)}; enslaving it "
                f"would cut the host off from them: move them to {name}, or set "
                f"allow_addressed_uplink = true in {segment.key}")
        ops.append(SetMaster(uplink.name, name))
    if uplink is not None and not uplink.is_up:
        ops.append(SetUp(uplink.name))
    if bridge is None or not bridge.is_up:
        ops.append(SetUp(name))
    return Plan(tuple(ops))


PREDICTED_INDEX = -1  # a bridge not created yet has no ifindex


def predicted_bridge(plan: Plan, uplink: Optional[Link]) -> Link:
    """The bridge as `plan` (plan_bridge's, for a missing bridge) leaves it, so that a dry
    run can plan the TAP against it: the planned address, up, and the pinned MTU or else
    the uplink's (an auto-MTU bridge follows its ports)."""
    create = next(op for op in plan.ops if isinstance(op, CreateBridge))
    pinned = [op.mtu for op in plan.ops if isinstance(op, SetMtu) and op.ifname == create.bridge]
    mtu = pinned[-1] if pinned else uplink.mtu if uplink is not None else BRIDGE_DEFAULT_MTU
    return Link(index=PREDICTED_INDEX, name=create.bridge, kind="bridge", tun_type=None,
                flags=IFF_UP, mtu=mtu, master=0, address=create.address, operstate=0)


def plan_attach(segment: Segment, tap: Link, bridge: Link) -> Plan:
    """Enslave the TAP to the (existing) bridge; nothing when it is already done."""
    require_tap(tap)
    ops: List[Op] = []
    if tap.master and tap.master != bridge.index:
        raise UnavailableError(f"{tap.name} is already a port of another master "
                               f"(ifindex {tap.master}); not moving it")
    # MTU first: a port with a smaller MTU would lower an auto-MTU bridge.
    if tap.mtu != bridge.mtu:
        ops.append(SetMtu(tap.name, bridge.mtu))
    if tap.master != bridge.index:
        ops.append(SetMaster(tap.name, segment.bridge))
    if not tap.is_up:
        ops.append(SetUp(tap.name))
    return Plan(tuple(ops))


# --- ifdown -----------------------------------------------------------------------------

def plan_detach(segment: Segment, tap: Optional[Link], bridge: Optional[Link]) -> Plan:
    if tap is None:
        return Plan(notes=("already gone (QEMU closed it)",))
    require_tap(tap)
    if tap.master and (bridge is None or tap.master != bridge.index):
        return Plan(notes=(f"on another master (ifindex {tap.master}), not {segment.bridge}; "
                           f"left alone",))
    ops: List[Op] = []
    if tap.master:
        ops.append(SetNoMaster(tap.name))
    if tap.is_up:
        ops.append(SetDown(tap.name))
    return Plan(tuple(ops))


# --- down -------------------------------------------------------------------------------

def plan_teardown(segment: Segment, bridge: Link, ports: Sequence[Link], force: bool) -> Plan:
    """Delete the bridge, refusing while ports other than its uplink remain (VMs still
    running, or ports someone else added) unless forced."""
    if bridge.kind != "bridge":
        raise UnavailableError(f"{bridge.name} exists but is a {describe_link(bridge)}, "
                               f"not a bridge; not deleting it")
    foreign = sorted(p.name for p in ports if p.name != segment.uplink)
    if foreign and not force:
        raise UnavailableError(f"{bridge.name} still has ports {', '.join(foreign)} "
                               f"(running VMs?); stop them or pass --force")
    ops: List[Op] = [SetNoMaster(p.name) for p in ports if p.name == segment.uplink]
    ops.append(DeleteLink(bridge.name))
    return Plan(tuple(ops))
