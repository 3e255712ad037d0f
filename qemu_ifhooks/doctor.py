"""`qemu-ifhooks check`: findings about the host, each with its severity and its fix.

Pure: `evaluate` turns gathered facts (`gather.py` reads them) into findings. The
walls guides like the seed article leave sysadmins to find on their own: a bridge MAC
that follows its ports, a TAP that lowers the bridge MTU, STP holding new ports, LRO on
the uplink or GRO off, br_netfilter sending bridged frames into a FORWARD chain that
drops, hooks QEMU cannot run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .configmodel import Config, Segment
from .firewall import BRIDGE, IPV4, IPV6, Drop
from .inventory import NET_ADDR_SET, OFFLOAD_FEATURES, Feature, Inventory, LinkInfo

OK, WARN, FAIL = "ok", "warn", "fail"
SEVERITIES = (OK, WARN, FAIL)
JSON_VERSION = 1


@dataclass(frozen=True)
class Finding:
    severity: str  # OK, WARN or FAIL
    check: str  # stable identifier of what was checked: "bridge.stp", "offload", ...
    subject: str  # what it is about: a file, an interface, a sysctl
    message: str
    fix: Optional[str] = None


@dataclass(frozen=True)
class HookEntry:
    name: str
    path: str
    exists: bool  # the name exists (a dangling symlink too)
    executable: bool  # QEMU can execv() it (X_OK, following symlinks)
    ours: bool  # an entry `install` wrote (or a symlink to a qemu-ifhook program)
    target: Optional[str] = None  # how it starts the hook, or where it resolves to
    config: Optional[str] = None  # the config it always reads (install --config)
    config_problem: Optional[str] = None  # why that config is unusable (missing, insecure)


@dataclass(frozen=True)
class HookDir:
    path: str
    exists: bool
    entries: Tuple[HookEntry, ...] = ()


@dataclass(frozen=True)
class Facts:
    config_path: str
    config: Optional[Config] = None
    config_error: Optional[str] = None
    config_insecure: bool = False  # the error is about ownership/mode
    config_owner: Optional[Tuple[int, int]] = None  # (uid, mode)
    inventory: Inventory = field(default_factory=Inventory)
    features: Dict[str, Dict[str, Feature]] = field(default_factory=dict)
    feature_errors: Dict[str, str] = field(default_factory=dict)
    bridge_nf: Optional[Dict[str, int]] = None  # {"iptables": 1, "ip6tables": 1}; None: no br_netfilter
    drops: Tuple[Drop, ...] = ()
    firewall_problems: Tuple[str, ...] = ()
    tun_problem: Optional[str] = None  # None: /dev/net/tun is usable
    hook_program: Optional[str] = None  # how this installation's entries start the hook
    hook_dirs: Tuple[HookDir, ...] = ()
    vlan_support: Optional[bool] = None  # 8021q: None when unknown
    vlan_filtering_support: Optional[bool] = None
    guarded: Tuple[str, ...] = ()  # TAP names with rules in the bridge table
    shaped: Tuple[str, ...] = ()  # TAP names with ifb devices
    # (tap, bridge, fix, who holds it): TAPs of running VMs that ifup attached and that
    # are on no bridge now (see reattach.py)
    detached: Tuple[Tuple[str, str, str, str], ...] = ()
    evpn: Optional[Any] = None  # frr.EvpnState, when the config has EVPN segments
    # The broker's socket (broker.py): (path, "listening" | "absent" | "stale" | why not)
    broker_socket: Optional[Tuple[str, str]] = None
    unknown_accounts: Tuple[Tuple[str, str, str], ...] = ()  # (segment key, "user"/"group", name)


# --- config -----------------------------------------------------------------------------

def config_findings(facts: Facts) -> List[Finding]:
    path = facts.config_path
    if facts.config is None:
        fix = (f"chown root: {path} && chmod go-w {path}" if facts.config_insecure
               else f"edit {path} (see qemu-ifhooks.toml(5) and the README's Configuration)")
        return [Finding(FAIL, "config", path, facts.config_error or "not loaded", fix)]
    segments = ", ".join(f"{s.key} {s.bridge}" for s in facts.config.segments)
    owner = ""
    if facts.config_owner is not None:
        uid, mode = facts.config_owner
        owner = f"; owned by uid {uid}, mode {mode:04o}"
    return [Finding(OK, "config", path, f"valid: {segments}{owner}")]


# --- bridges ----------------------------------------------------------------------------

def _stp_findings(segment: Segment, bridge: LinkInfo) -> List[Finding]:
    info = bridge.bridge
    if info is None:
        return []
    delay = info.forward_delay
    hold = f"every new port (each VM's TAP) waits 2 x {delay:g} s = {2 * delay:g} s before " \
           f"forwarding, and the guest's DHCP may give up meanwhile"
    name = bridge.name
    if info.stp and not segment.stp:
        return [Finding(WARN, "bridge.stp", name, f"STP is on ({segment.key} has stp = false): "
                        f"{hold}", f"ip link set dev {name} type bridge stp_state 0")]
    if info.stp:
        if abs(delay - segment.forward_delay) >= 0.01:
            return [Finding(WARN, "bridge.stp", name,
                            f"STP is on with forward delay {delay:g} s, {segment.key} has "
                            f"forward_delay = {segment.forward_delay}: {hold}",
                            f"ip link set dev {name} type bridge forward_delay "
                            f"{segment.forward_delay * 100}")]
        return [Finding(OK, "bridge.stp", name, f"STP on as configured: {hold}")]
    if segment.stp:
        return [Finding(WARN, "bridge.stp", name,
                        f"STP is off but {segment.key} has stp = true",
                        f"ip link set dev {name} type bridge stp_state 1")]
    return [Finding(OK, "bridge.stp", name, "STP off: new ports forward at once")]


def _mtu_findings(segment: Segment, bridge: LinkInfo, ports: List[LinkInfo]) -> List[Finding]:
    name, mtu = bridge.name, bridge.mtu
    out: List[Finding] = []
    if segment.mtu is not None and mtu != segment.mtu:
        out.append(Finding(WARN, "bridge.mtu", name,
                           f"MTU {mtu}, but {segment.key} pins mtu = {segment.mtu}",
                           f"ip link set dev {name} mtu {segment.mtu}"))
    smallest = min(ports, key=lambda p: (p.mtu, p.name)) if ports else None
    for port in ports:
        if port.mtu < mtu:
            out.append(Finding(FAIL, "bridge.mtu", port.name,
                               f"MTU {port.mtu} is below {name}'s {mtu}: frames over "
                               f"{port.mtu} bytes are dropped on their way to {port.name}",
                               f"ip link set dev {port.name} mtu {mtu}"))
        elif port.mtu > mtu:
            follows = ""
            if smallest is not None and smallest.mtu == mtu and segment.mtu is None:
                follows = f" (an auto-MTU bridge follows its smallest port: {smallest.name})"
            if port.name == segment.uplink:
                fix = (f"ip link set dev {name} mtu {port.mtu}, and mtu = {port.mtu} in "
                       f"{segment.key} so the bridge keeps it")
            else:
                fix = f"ip link set dev {port.name} mtu {mtu}"
            out.append(Finding(WARN, "bridge.mtu", port.name,
                               f"MTU {port.mtu} is above {name}'s {mtu}{follows}", fix))
    if not out:
        out.append(Finding(OK, "bridge.mtu", name,
                           f"MTU {mtu}" + (", as are all its ports" if ports else "")))
    return out


def _mac_findings(bridge: LinkInfo) -> List[Finding]:
    if bridge.addr_assign_type is None:
        return [Finding(WARN, "bridge.mac", bridge.name,
                        f"MAC {bridge.address}: cannot tell whether it is fixed "
                        f"(/sys/class/net/{bridge.name}/addr_assign_type unreadable)")]
    if bridge.addr_assign_type == NET_ADDR_SET:
        return [Finding(OK, "bridge.mac", bridge.name, f"MAC {bridge.address} is fixed")]
    return [Finding(WARN, "bridge.mac", bridge.name,
                    f"MAC {bridge.address} follows its ports: it changes when a port with a "
                    f"lower MAC joins or leaves, and hosts on the segment keep the old one "
                    f"in their ARP caches", f"ip link set dev {bridge.name} address {bridge.address}")]


def bridge_findings(segment: Segment, inventory: Inventory) -> List[Finding]:
    name = segment.bridge
    bridge = inventory.get(name)
    if bridge is None:
        if segment.create:
            return [Finding(OK, "bridge", name, f"absent; the first ifup on {segment.key} "
                            f"creates it (or run 'qemu-ifhooks up {segment.vlan}')")]
        return [Finding(FAIL, "bridge", name, f"absent, and {segment.key} has create = false: "
                        f"VMs on it cannot start", f"qemu-ifhooks up {segment.vlan}")]
    if bridge.kind != "bridge":
        return [Finding(FAIL, "bridge", name, f"exists but is a {bridge.kind_text} device, "
                        f"not a bridge", f"rename or delete it, or change {segment.key}.bridge")]
    out = []
    if bridge.admin_up:
        out.append(Finding(OK, "bridge", name, f"bridge, {bridge.operstate.lower()}"))
    else:
        out.append(Finding(WARN, "bridge", name, "bridge, down",
                           f"ip link set dev {name} up"))
    ports = inventory.ports(name)
    return out + _stp_findings(segment, bridge) + _mtu_findings(segment, bridge, ports) + \
        _mac_findings(bridge) + _vlan_findings(segment, bridge)


def _vids(vids) -> str:
    return ", ".join(str(vid) for vid in vids)


def _vlan_findings(segment: Segment, bridge: LinkInfo) -> List[Finding]:
    """A bridge shared by tagged segments filters VLANs, and puts no port in a VLAN by
    default: the hooks give each port its own."""
    info = bridge.bridge
    if not segment.vlan_aware or info is None or info.vlan_default_pvid is None:
        return []  # a kernel without VLAN filtering: the kernel finding says so
    name = bridge.name
    if not info.vlan_filtering:
        return [Finding(FAIL, "bridge.vlan", name,
                        f"VLAN filtering is off, but tagged segments share it (VLANs "
                        f"{_vids(segment.bridge_vids)}): ifup refuses it rather than turn "
                        f"filtering on under running guests",
                        f"with no guest on it: ip link set dev {name} type bridge "
                        f"vlan_filtering 1 vlan_default_pvid 0")]
    if info.vlan_default_pvid:
        return [Finding(WARN, "bridge.vlan", name,
                        f"default PVID {info.vlan_default_pvid}: every new port joins VLAN "
                        f"{info.vlan_default_pvid} untagged (ifup takes TAPs out of it again)",
                        f"ip link set dev {name} type bridge vlan_default_pvid 0")]
    return [Finding(OK, "bridge.vlan", name, f"VLAN filtering on, no default PVID; VLANs "
                    f"{_vids(segment.bridge_vids)}")]


# --- uplinks ----------------------------------------------------------------------------

def _offload_findings(segment: Segment, device: str, facts: Facts,
                      upper: Optional[str] = None) -> List[Finding]:
    """LRO off and GRO on, as the hook checks them; `upper` is the uplink when `device`
    is the device it sits on."""
    role = f"lower device of {upper}: " if upper else ""
    if device in facts.feature_errors:
        return [Finding(WARN, "offload", device,
                        f"{role}cannot read offloads: {facts.feature_errors[device]}")]
    features = facts.features.get(device, {})
    bad = FAIL if segment.offload_check == "enforce" else WARN
    hook = {"enforce": "ifup refuses to bridge it", "warn": "ifup warns",
            "off": "offload_check = \"off\" skips this in the hook"}[segment.offload_check]
    out = []
    lro, gro = features.get("rx-lro"), features.get("rx-gro")
    if lro is not None and lro.enabled:
        out.append(Finding(bad, "offload", device,
                           f"{role}rx-lro (LRO) is on: a bridge cannot forward LRO-merged packets "
                           f"({hook})", f"ethtool -K {device} lro off"))
    if gro is not None and not gro.enabled:
        out.append(Finding(bad, "offload", device,
                           f"{role}rx-gro (GRO) is off{' [fixed]' if gro.fixed else ''}: the "
                           f"guests get no receive offload ({hook})",
                           f"ethtool -K {device} gro on"))
    if not out:
        text = ", ".join(f"{key} {'on' if f.enabled else 'off'}{' [fixed]' if f.fixed else ''}"
                         for key, f in ((k, features.get(k)) for k in OFFLOAD_FEATURES) if f)
        out.append(Finding(OK, "offload", device,
                           role + (text or "no receive offloads reported")))
    return out


def _classic_port_findings(segment: Segment, facts: Facts) -> Optional[List[Finding]]:
    """A classic segment's <uplink>.<tag> while it does not exist yet, or is not that
    VLAN on that uplink; None when it is, and the uplink checks go on with it."""
    name, parent = segment.uplink_port, segment.uplink
    assert name is not None and parent is not None
    port, uplink = facts.inventory.get(name), facts.inventory.get(parent)
    if port is None and uplink is None:
        return [Finding(FAIL, "uplink", parent, f"uplink of {segment.bridge} (through {name}) "
                        f"does not exist: ifup on {segment.key} fails",
                        f"create it, or correct {segment.key}.uplink")]
    if port is None:
        return [Finding(OK, "uplink", name, f"absent; the first ifup on {segment.key} creates "
                        f"it on {parent} (802.1Q tag {segment.tag})")] + \
            _offload_findings(segment, parent, facts)
    if port.kind != "vlan" or port.vlan_id != segment.tag or port.lower != parent:
        what = (f"VLAN {port.vlan_id} on {port.lower}" if port.kind == "vlan"
                else f"a {port.kind_text} device")
        return [Finding(FAIL, "uplink", name, f"is {what}, not VLAN {segment.tag} on {parent}: "
                        f"ifup on {segment.key} refuses it",
                        f"rename or delete it, or change {segment.key}")]
    return None


def _uplink_vlan_findings(segment: Segment, uplink: LinkInfo,
                          bridge: Optional[LinkInfo]) -> List[Finding]:
    """A VLAN-aware bridge's uplink carries its VLANs, once the bridge filters at all
    (the bridge and kernel findings say when it does not)."""
    filtering = bridge is not None and bridge.bridge is not None and bridge.bridge.vlan_filtering
    if not segment.vlan_aware or uplink.master != segment.bridge or not filtering:
        return []
    missing = [vid for vid in segment.bridge_vids if vid not in uplink.port_vids]
    if missing:
        return [Finding(WARN, "bridge.vlan", uplink.name,
                        f"lacks VLAN {_vids(missing)} of {segment.bridge}: that traffic stays "
                        f"off the LAN until the next ifup adds it",
                        " && ".join(f"bridge vlan add dev {uplink.name} vid {vid}"
                                    for vid in missing))]
    return [Finding(OK, "bridge.vlan", uplink.name,
                    f"carries VLANs {_vids(segment.bridge_vids)} of {segment.bridge}")]


def uplink_findings(segment: Segment, facts: Facts) -> List[Finding]:
    name = segment.uplink_port
    if name is None:
        return []
    if segment.classic:
        early = _classic_port_findings(segment, facts)
        if early is not None:
            return early
    inventory = facts.inventory
    uplink = inventory.get(name)
    bridge = inventory.get(segment.bridge)
    if uplink is None:
        return [Finding(FAIL, "uplink", name, f"uplink of {segment.bridge} does not exist: "
                        f"ifup on {segment.key} fails",
                        f"create it, or correct {segment.key}.uplink")]
    out = []
    state = "up" if uplink.admin_up else "down"
    if uplink.master == segment.bridge:
        out.append(Finding(OK if uplink.admin_up else WARN, "uplink", name,
                           f"port of {segment.bridge}, {state}",
                           None if uplink.admin_up else f"ip link set dev {name} up"))
    elif uplink.master is not None:
        out.append(Finding(FAIL, "uplink", name, f"is a port of {uplink.master}, not of "
                           f"{segment.bridge}: the hooks will not move it",
                           f"ip link set dev {name} nomaster"))
    elif bridge is not None:
        out.append(Finding(WARN, "uplink", name, f"not a port of {segment.bridge} yet: the "
                           f"next ifup attaches it", f"qemu-ifhooks up {segment.vlan}"))
    else:
        out.append(Finding(OK, "uplink", name, f"{state}; joins {segment.bridge} when the "
                           f"bridge is created"))
    addresses = ", ".join(uplink.global_addresses)
    if not addresses:
        out.append(Finding(OK, "uplink.addresses", name, "no global addresses"))
    elif uplink.master == segment.bridge:
        out.append(Finding(WARN, "uplink.addresses", name,
                           f"carries {addresses} while a port of {segment.bridge}: addresses "
                           f"on a bridge port do not work", f"move them to {segment.bridge}"))
    elif not segment.allow_addressed_uplink:
        out.append(Finding(FAIL, "uplink.addresses", name,
                           f"carries {addresses}: ifup refuses to enslave it (that would cut "
                           f"the host off from them)",
                           f"move them to {segment.bridge}, or set allow_addressed_uplink = "
                           f"true in {segment.key}"))
    else:
        out.append(Finding(WARN, "uplink.addresses", name,
                           f"carries {addresses}; allow_addressed_uplink = true: the host "
                           f"loses them when {segment.bridge} takes the uplink",
                           f"move them to {segment.bridge}"))
    out += _offload_findings(segment, name, facts)
    if uplink.lower and uplink.lower in inventory.links:
        out += _offload_findings(segment, uplink.lower, facts, upper=name)
    return out + _uplink_vlan_findings(segment, uplink, bridge)


# --- host-wide --------------------------------------------------------------------------

_SYSCTL = {IPV4: "bridge-nf-call-iptables", IPV6: "bridge-nf-call-ip6tables"}


def netfilter_findings(facts: Facts) -> List[Finding]:
    bridges = [b for b in (facts.inventory.get(s.bridge) for s in
                           (facts.config.bridges() if facts.config else ())) if b and b.bridge]
    paths = {BRIDGE}
    why: Dict[str, str] = {}
    if facts.bridge_nf is not None:
        for path, key in ((IPV4, "iptables"), (IPV6, "ip6tables")):
            if facts.bridge_nf.get(key):
                paths.add(path)
                why[path] = f"net.bridge.{_SYSCTL[path]} = 1"
            else:
                per_bridge = [b.name for b in bridges if
                              (b.bridge.nf_call_iptables if path == IPV4 else
                               b.bridge.nf_call_ip6tables)]
                if per_bridge:
                    paths.add(path)
                    why[path] = f"nf_call_{key} on {', '.join(per_bridge)}"
    out = []
    for drop in facts.drops:
        active = [p for p in drop.paths if p in paths]
        if not active:
            continue
        if BRIDGE in active:
            reason, fix = "a bridge-family forward chain sees every bridged frame", \
                f"accept the VM ports' traffic in {drop.where}"
        else:
            reason = " and ".join(why[p] for p in active)
            sysctls = " ".join(f"net.bridge.{_SYSCTL[p]}=0" for p in active)
            fix = (f"sysctl -w {sysctls} (persist it in /etc/sysctl.d/), or accept bridged "
                   f"frames: iptables -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT")
        what = f"{drop.rule} drops everything" if drop.unconditional else \
            f"{drop.rule} drops some packets"
        severity = FAIL if drop.unconditional else WARN
        out.append(Finding(severity, "netfilter", drop.where,
                           f"{what}, and bridged VM traffic passes it ({reason})", fix))
    for problem in facts.firewall_problems:
        out.append(Finding(WARN, "netfilter", "firewall", problem,
                           "run 'qemu-ifhooks check' as root with nftables installed"))
    if not out:
        if facts.bridge_nf is None:
            text = "br_netfilter not loaded: bridged frames bypass the IP FORWARD chains"
        else:
            state = ", ".join(f"{_SYSCTL[p]} = {facts.bridge_nf.get(k, 0)}"
                              for p, k in ((IPV4, "iptables"), (IPV6, "ip6tables")))
            text = f"br_netfilter loaded ({state}); no forward chain drops bridged frames"
        out.append(Finding(OK, "netfilter", "br_netfilter", text))
    return out


def tun_findings(facts: Facts) -> List[Finding]:
    if facts.tun_problem:
        return [Finding(FAIL, "tun", "/dev/net/tun", facts.tun_problem,
                        "modprobe tun, or: mkdir -p /dev/net && mknod /dev/net/tun c 10 200")]
    return [Finding(OK, "tun", "/dev/net/tun", "present")]


def hook_findings(facts: Facts) -> List[Finding]:
    out = []
    for directory in facts.hook_dirs:
        install = f"qemu-ifhooks install --dir {directory.path}"
        if not directory.exists:
            out.append(Finding(WARN, "hook", directory.path,
                               "does not exist: no hook entries installed there", install))
            continue
        for entry in directory.entries:
            if not entry.exists:
                out.append(Finding(WARN, "hook", entry.path, "missing: QEMU pointed at it "
                                   "fails to start the netdev", install))
            elif not entry.executable:
                if entry.ours or entry.target is None:
                    fix = f"{install} --force"
                else:
                    fix = f"chmod +x {entry.target}"
                gone = " (dangling symlink)" if entry.target is None else ""
                out.append(Finding(FAIL, "hook", entry.path,
                                   f"not executable{gone}: QEMU cannot run it "
                                   f"(\"network script ... failed\")", fix))
            elif not entry.ours:
                out.append(Finding(WARN, "hook", entry.path,
                                   "not a qemu-ifhooks entry (a script of its own?)",
                                   f"{install} --force"))
            elif facts.hook_program and entry.target != facts.hook_program:
                out.append(Finding(WARN, "hook", entry.path,
                                   f"points at {entry.target}, not this installation's "
                                   f"{facts.hook_program}", install))
            else:
                out.append(Finding(OK, "hook", entry.path, f"-> {entry.target}"))
            if entry.config is not None:
                out.append(_entry_config_finding(entry, install))
    return out


def _entry_config_finding(entry: HookEntry, install: str) -> Finding:
    if entry.config_problem is None:
        return Finding(OK, "hook.config", entry.path, f"reads {entry.config}")
    fix = None if "insecure" in entry.config_problem else \
        f"write {entry.config}, or run '{install} --config PATH' with the right file"
    return Finding(FAIL, "hook.config", entry.path,
                   f"its config is unusable, every VM start through it fails: "
                   f"{entry.config_problem}", fix)


def kernel_findings(facts: Facts) -> List[Finding]:
    def known(value: Optional[bool]) -> str:
        return "unknown" if value is None else "present" if value else "absent"
    have = (f"802.1Q (8021q) {known(facts.vlan_support)}, bridge VLAN filtering "
            f"{known(facts.vlan_filtering_support)}")
    tagged = [s for s in (facts.config.segments if facts.config else ()) if s.tag is not None]
    if not tagged:
        return [Finding(OK, "kernel", "kernel", f"{have}; the config uses neither")]
    out = []
    for segment in tagged:
        subject = f"{segment.key}.tag"
        if segment.vlan_aware:
            what = f"802.1Q tag {segment.tag} on VLAN-aware {segment.bridge}"
            lacking = facts.vlan_filtering_support is False
            fix = ("use a kernel built with CONFIG_BRIDGE_VLAN_FILTERING, or give each tagged "
                   "segment a bridge of its own")
            needs = "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)"
        else:
            what = f"802.1Q tag {segment.tag} ({segment.uplink_port})"
            lacking = facts.vlan_support is False and \
                facts.inventory.get(segment.uplink_port) is None
            fix = "modprobe 8021q, or use a kernel with CONFIG_VLAN_8021Q"
            needs = "802.1Q VLAN support (CONFIG_VLAN_8021Q)"
        if lacking:
            out.append(Finding(FAIL, "kernel", subject, f"{what} needs {needs}, which this "
                               f"kernel lacks: ifup on {segment.key} fails ({have})", fix))
        elif segment.vlan_aware and facts.vlan_filtering_support is None:
            out.append(Finding(WARN, "kernel", subject, f"{what} needs {needs}: cannot tell "
                               f"whether this kernel has it (no bridge to look at, no kernel "
                               f"config): the first ifup on {segment.key} tells ({have})",
                               f"qemu-ifhooks up {segment.vlan}"))
        else:
            out.append(Finding(OK, "kernel", subject, f"{what}: {have}"))
    return out


def guard_findings(facts: Facts) -> List[Finding]:
    """Every TAP of a segment under port_security has its rules; no rules or ifb
    device is left of a TAP that is gone."""
    out: List[Finding] = []
    inventory = facts.inventory
    for segment in facts.config.segments if facts.config else ():
        if segment.port_security == "off" or inventory.get(segment.bridge) is None:
            continue
        for port in inventory.ports(segment.bridge):
            if port.is_tap and port.name not in facts.guarded:
                out.append(Finding(FAIL, "port_security", port.name,
                                   f'on {segment.bridge}, whose {segment.key} has port_security = '
                                   f'"{segment.port_security}", but no rules guard it',
                                   f"qemu-ifhooks hook ifup --vlan {segment.vlan} {port.name}"))
    gone = sorted({tap for tap in facts.guarded + facts.shaped if tap not in inventory.links})
    for tap in gone:
        out.append(Finding(WARN, "port_security", tap, "rules or ifb devices are left of this TAP, "
                           "which is gone (its VM was killed)", "qemu-ifhooks up (sweeps them)"))
    return out


def detached_findings(facts: Facts) -> List[Finding]:
    return [Finding(WARN, "tap.detached", tap, f"attached to {bridge} by ifup and still held "
                    f"({who}), but on no bridge now (the bridge was rebuilt?): the guest is "
                    f"cut off", fix) for tap, bridge, fix, who in facts.detached]


def broker_findings(facts: Facts) -> List[Finding]:
    """The unprivileged bridge helper's service and who may use which segment; nothing
    when no segment is open to users and no broker runs."""
    config = facts.config
    open_segments = [s for s in config.segments if s.allow_users or s.allow_groups] \
        if config is not None else []
    if facts.broker_socket is None:
        return []
    path, state = facts.broker_socket
    if not open_segments and state == "absent":
        return []
    out = []
    if state == "listening":
        out.append(Finding(OK, "broker.socket", path, "a broker listens (bridge helper usable)"))
    elif state == "absent":
        out.append(Finding(WARN, "broker.socket", path,
                           "no broker socket: segments are open to users, but their bridge "
                           "helper cannot get a TAP",
                           "systemctl enable --now qemu-ifhooks-broker.socket"))
    elif state == "stale":
        out.append(Finding(WARN, "broker.socket", path, "the socket exists but nothing listens "
                           "(a broker that died?)",
                           "systemctl restart qemu-ifhooks-broker.socket"))
    else:
        out.append(Finding(WARN, "broker.socket", path, state))
    for segment in open_segments:
        who = "; ".join(part for part in (
            "users " + ", ".join(segment.allow_users) if segment.allow_users else "",
            "groups " + ", ".join(segment.allow_groups) if segment.allow_groups else "")
            if part)
        out.append(Finding(OK, "broker.access", segment.key,
                           f"bridge {segment.bridge} open to {who} (and root)"))
    for key, kind, name in facts.unknown_accounts:
        out.append(Finding(WARN, "broker.access", key,
                           f"allow_{kind}s names {kind} {name}, which does not exist",
                           f"create the {kind}, or remove it from allow_{kind}s"))
    return out


def evaluate(facts: Facts) -> List[Finding]:
    """Every finding, in a fixed order: config, then per bridge (bridge, uplink,
    offloads), then host-wide."""
    from .vxlancheck import evpn_findings, vxlan_findings

    out = config_findings(facts)
    if facts.config is not None:
        for segment in facts.config.bridges():
            out += bridge_findings(segment, facts.inventory)
            out += uplink_findings(segment, facts)
            out += vxlan_findings(segment, facts.inventory)
        out += evpn_findings(facts.config, facts.evpn)
    out += guard_findings(facts)
    out += detached_findings(facts)
    out += broker_findings(facts)
    out += netfilter_findings(facts) + tun_findings(facts) + hook_findings(facts) + \
        kernel_findings(facts)
    return out


# --- output -----------------------------------------------------------------------------

def failed(findings: List[Finding]) -> bool:
    return any(f.severity == FAIL for f in findings)


def counts(findings: List[Finding]) -> Dict[str, int]:
    return {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}


def render_text(findings: List[Finding]) -> str:
    lines = []
    for f in findings:
        fix = f"; fix: {f.fix}" if f.fix and f.severity != OK else ""
        lines.append(f"{f.severity:<4} {f.subject}: {f.message}{fix}")
    n = counts(findings)
    lines.append(f"{n[OK]} ok, {n[WARN]} warn, {n[FAIL]} fail")
    return "\n".join(lines) + "\n"


def render_json(findings: List[Finding]) -> str:
    return json.dumps({
        "version": JSON_VERSION,
        "result": FAIL if failed(findings) else WARN if counts(findings)[WARN] else OK,
        "counts": counts(findings),
        "findings": [{"severity": f.severity, "check": f.check, "subject": f.subject,
                      "message": f.message, "fix": f.fix if f.severity != OK else None}
                     for f in findings],
    }, indent=2) + "\n"
