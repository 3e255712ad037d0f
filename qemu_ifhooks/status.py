"""`qemu-ifhooks status`: per segment, the bridge, its uplink and every port, with the
QEMU process holding each TAP ("which VM is on which bridge").

A process holding a TAP has a /dev/net/tun descriptor whose /proc/PID/fdinfo shows
`iff:\tNAME`; the VM name comes from that process's `-name` argument. Only processes in
this network namespace count: TAP names are per namespace.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .configmodel import Config
from .inventory import NET_ADDR_SET, Inventory, LinkInfo
from .qemuopts import split_opts
from .reattach import Attachment, detached, read_attachments

JSON_VERSION = 1


@dataclass(frozen=True)
class Holder:
    pid: int
    comm: str
    vm: Optional[str]  # from -name; None when the process has none


# --- who holds which TAP --------------------------------------------------------------

def vm_name(cmdline: Iterable[str]) -> Optional[str]:
    """The guest name of a QEMU command line: `-name foo`, `-name guest=foo,...` or
    `-name foo,process=...` (QEMU merges repeated -name options: the last one wins)."""
    args = list(cmdline)
    name = None
    for option, value in zip(args, args[1:]):
        if option not in ("-name", "--name"):
            continue
        options = split_opts(value)
        first, text = options[0]
        if text is None and first:
            name = first  # the implied "guest" key
        for key, text in options:
            if key == "guest" and text is not None:
                name = text
    return name


def parse_iff(fdinfo: str) -> Optional[str]:
    """The TAP/TUN name in a /dev/net/tun descriptor's fdinfo (the kernel's tun driver
    prints `iff:\tNAME`), or None for a descriptor not attached to any device."""
    for line in fdinfo.splitlines():
        if line.startswith("iff:"):
            return line[4:].strip() or None
    return None


def _read(path: str, mode: str = "r"):
    with open(path, mode) as f:
        return f.read()


def tap_holders(proc: str = "/proc") -> Dict[str, List[Holder]]:
    """TAP/TUN name -> the processes of this network namespace that hold it open."""
    try:
        mine = os.stat(f"{proc}/self/ns/net")
    except OSError:
        mine = None
    held: Dict[str, List[Holder]] = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        base = f"{proc}/{entry}"
        try:
            if mine is not None:
                ns = os.stat(f"{base}/ns/net")
                if (ns.st_dev, ns.st_ino) != (mine.st_dev, mine.st_ino):
                    continue
            names = set()
            for fd in os.listdir(f"{base}/fd"):
                try:
                    if os.readlink(f"{base}/fd/{fd}") != "/dev/net/tun":
                        continue
                    name = parse_iff(_read(f"{base}/fdinfo/{fd}"))
                except OSError:
                    continue  # closed meanwhile
                if name:
                    names.add(name)
            if not names:
                continue
            comm = _read(f"{base}/comm").strip()
            cmdline = _read(f"{base}/cmdline", "rb").decode("utf-8", "surrogateescape")
        except OSError:
            continue  # gone, or not ours to read
        holder = Holder(int(entry), comm, vm_name(cmdline.split("\0")))
        for name in sorted(names):
            held.setdefault(name, []).append(holder)
    return held


# --- the report -----------------------------------------------------------------------

@dataclass(frozen=True)
class Port:
    name: str
    kind: str
    role: str  # "uplink", "tap" or "other"
    state: str
    mtu: int
    mac: Optional[str]
    holders: Tuple[Holder, ...] = ()
    # TAPs: the guard the hooks gave them
    port_security: Optional[str] = None  # the segment's mode when the TAP has rules, "off" when none
    isolated: Optional[bool] = None
    rx_mbit: Optional[int] = None  # a limit in force (its ifb device exists)
    tx_mbit: Optional[int] = None
    owner_uid: Optional[int] = None  # TUNSETOWNER: the user a bridge-helper TAP is for


@dataclass(frozen=True)
class SegmentStatus:
    vlan: int
    bridge: str
    present: bool
    kind: Optional[str]
    state: Optional[str]
    mtu: Optional[int]
    mac: Optional[str]
    mac_fixed: Optional[bool]
    stp: Optional[bool]
    uplink: Optional[str]
    uplink_present: bool
    uplink_state: Optional[str]
    uplink_master: Optional[str]
    ports: Tuple[Port, ...]
    # TAPs ifup attached here whose VM still runs and which are on no bridge now
    detached: Tuple[Tuple[Attachment, Tuple[Holder, ...]], ...] = ()
    vxlan: Optional[dict] = None  # vxlancheck.vxlan_status: VNI, remote VTEPs and MACs


def _state(link: LinkInfo) -> str:
    return link.operstate.lower() if link.admin_up else "down"


def _isolated(name: str) -> Optional[bool]:
    try:
        with open(f"/sys/class/net/{name}/brport/isolated") as f:
            return f.read().strip() == "1"
    except OSError:
        return None


def _owner(name: str) -> Optional[int]:
    """The TAP's owning uid (set by the broker for the bridge helper's caller), or None."""
    try:
        with open(f"/sys/class/net/{name}/owner") as f:
            uid = int(f.read())
    except (OSError, ValueError):
        return None
    return uid if uid >= 0 else None


def _guard(segment, link: LinkInfo, guarded: Sequence[str], shaped: Dict[str, List[str]]) -> dict:
    ifbs = shaped.get(link.name, [])
    return {
        "port_security": segment.port_security if link.name in guarded else "off",
        "isolated": _isolated(link.name),
        "rx_mbit": segment.guest_rx_mbit if any(i.startswith("rx-") for i in ifbs) else None,
        "tx_mbit": segment.guest_tx_mbit if any(i.startswith("tx-") for i in ifbs) else None,
        "owner_uid": _owner(link.name),
    }


def detached_taps(inventory: Inventory, holders: Dict[str, List[Holder]],
                  records: Sequence[Attachment]):
    """The recorded TAPs of running VMs that are on no bridge (see reattach.py)."""
    links = {name: (link.index, link.master) for name, link in inventory.links.items()}
    return detached(records, links, holders)


def build_status(config: Config, inventory: Inventory, holders: Dict[str, List[Holder]],
                 records: Sequence[Attachment] = (), guarded: Sequence[str] = (),
                 shaped: Optional[Dict[str, List[str]]] = None,
                 fdb: Optional[Dict[str, list]] = None) -> List[SegmentStatus]:
    """`records`: what ifup attached; `guarded`: TAP names with rules in the bridge
    table; `shaped`: {TAP: its ifb devices}; `fdb`: the VXLAN links' fdb entries."""
    from .vxlancheck import vxlan_status

    out = []
    lost = detached_taps(inventory, holders, records)
    for segment in config.segments:
        bridge = inventory.get(segment.bridge)
        uplink = inventory.get(segment.uplink_port)
        ports = []
        if bridge is not None:
            for link in inventory.ports(bridge.name):
                role = "uplink" if link.name == segment.uplink_port else \
                    "tap" if link.is_tap else "other"
                guard = _guard(segment, link, guarded, shaped or {}) if role == "tap" else {}
                ports.append(Port(link.name, link.kind_text, role, _state(link), link.mtu,
                                  link.address, tuple(holders.get(link.name, ())), **guard))
        out.append(SegmentStatus(
            vlan=segment.vlan, bridge=segment.bridge, present=bridge is not None,
            kind=bridge.kind_text if bridge else None,
            state=_state(bridge) if bridge else None,
            mtu=bridge.mtu if bridge else None, mac=bridge.address if bridge else None,
            mac_fixed=(bridge.addr_assign_type == NET_ADDR_SET
                       if bridge and bridge.addr_assign_type is not None else None),
            stp=bridge.bridge.stp if bridge and bridge.bridge else None,
            uplink=segment.uplink_port, uplink_present=uplink is not None,
            uplink_state=_state(uplink) if uplink else None,
            uplink_master=uplink.master if uplink else None,
            ports=tuple(ports), vxlan=vxlan_status(segment, fdb or {}),
            detached=tuple((r, h) for r, h in lost if r.vlan == segment.vlan)))
    return out


def holder_text(holders: Tuple[Holder, ...]) -> str:
    if not holders:
        return "held by no process"
    return ", ".join(f"{h.comm} pid {h.pid}" + (f" vm {h.vm}" if h.vm else " (no -name)")
                     for h in holders)


def _guard_text(port: Port) -> str:
    """What guards the TAP, when anything does."""
    parts = [f"port security {port.port_security}"] if port.port_security not in (None, "off") else []
    if port.isolated:
        parts.append("isolated")
    parts += [f"{d} {mbit} Mbit/s" for d, mbit in (("rx", port.rx_mbit), ("tx", port.tx_mbit)) if mbit]
    if port.owner_uid is not None:
        parts.append(f"owner uid {port.owner_uid} (bridge helper)")
    return "".join(f", {part}" for part in parts)


def render_text(segments: List[SegmentStatus]) -> str:
    from .vxlancheck import vxlan_status_lines

    lines = []
    for s in segments:
        if not s.present:
            lines.append(f"{'vlan.%d' % s.vlan}: {s.bridge}: absent")
        else:
            mac = f"{s.mac} ({'fixed' if s.mac_fixed else 'follows its ports'})" \
                if s.mac_fixed is not None else f"{s.mac}"
            what = f"{s.kind}, " if s.kind != "bridge" else ""
            stp = "" if s.stp is None else f", stp {'on' if s.stp else 'off'}"
            lines.append(f"vlan.{s.vlan}: {s.bridge}: {what}{s.state}, mtu {s.mtu}, "
                         f"mac {mac}{stp}")
        if s.uplink:
            if not s.uplink_present:
                lines.append(f"  uplink {s.uplink}: absent")
            else:
                where = f"port of {s.uplink_master}" if s.uplink_master else "not a port"
                lines.append(f"  uplink {s.uplink}: {s.uplink_state}, {where}")
        for p in s.ports:
            extra = f", {holder_text(p.holders)}{_guard_text(p)}" if p.role == "tap" else ""
            role = "uplink" if p.role == "uplink" else p.kind
            lines.append(f"  port {p.name} ({role}): {p.state}, mtu {p.mtu}{extra}")
        if s.present and not s.ports:
            lines.append("  no ports")
        for record, holders in s.detached:
            lines.append(f"  tap {record.tap}: detached from {s.bridge}, "
                         f"{holder_text(holders)}; run '{record.fix}'")
        lines += vxlan_status_lines(s.vxlan)
    return "\n".join(lines) + "\n"


def render_json(segments: List[SegmentStatus]) -> str:
    def segment(s: SegmentStatus) -> dict:
        return {
            "vlan": s.vlan,
            "bridge": {"name": s.bridge, "present": s.present, "kind": s.kind,
                       "state": s.state, "mtu": s.mtu, "mac": s.mac,
                       "mac_fixed": s.mac_fixed, "stp": s.stp},
            "uplink": None if s.uplink is None else {
                "name": s.uplink, "present": s.uplink_present, "state": s.uplink_state,
                "master": s.uplink_master},
            "ports": [{"name": p.name, "kind": p.kind, "role": p.role, "state": p.state,
                       "mtu": p.mtu, "mac": p.mac,
                       "processes": [asdict(h) for h in p.holders],
                       **({"port_security": p.port_security, "isolated": p.isolated,
                           "rx_mbit": p.rx_mbit, "tx_mbit": p.tx_mbit,
                           "owner_uid": p.owner_uid} if p.role == "tap" else {})}
                      for p in s.ports],
            "detached": [{"name": r.tap, "ifindex": r.ifindex, "fix": r.fix,
                          "processes": [asdict(h) for h in holders]}
                         for r, holders in s.detached],
            "vxlan": s.vxlan,
        }
    return json.dumps({"version": JSON_VERSION, "segments": [segment(s) for s in segments]},
                      indent=2) + "\n"


def run_status(config: Config, as_json: bool) -> int:
    from .inventory import read_inventory

    from .guards import guarded_taps, shaped_taps
    from .linkbuild import list_links
    from .netlink import Netlink

    with Netlink() as nl:
        shaped = shaped_taps(list_links(nl))
    from .vxlancheck import read_fdb

    segments = build_status(config, read_inventory(), tap_holders(), read_attachments(),
                            guarded_taps(), shaped, read_fdb(config))
    print(render_json(segments) if as_json else render_text(segments), end="")
    return 0
