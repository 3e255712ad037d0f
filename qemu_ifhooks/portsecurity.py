"""What a guest's TAP may send: the rules of its chain in the bridge table (nftables.py).

    port_security = "mac"   only the guest's MAC as Ethernet source, ARP sender and
                            NDP link-layer address (neighbour solicitations and
                            advertisements);
    port_security = "ip"    that, and only its configured IPv4 addresses as IPv4 source
                            and ARP sender IP (0.0.0.0 for ARP probes), only its IPv6
                            addresses, the link-local derived from its MAC and ::
                            (duplicate address detection) as IPv6 source; DHCPv4
                            requests (0.0.0.0:68 -> 255.255.255.255:67) and DHCPv6
                            (from its link-local) allowed; router advertisements and
                            DHCP server replies from the guest dropped; other
                            ethertypes dropped.

Only what the guest sends is filtered, never what it receives. Addresses come from
the config alone (no learning). Pure: each rule is its `nft` text, which `plan`
prints, and its expressions, which nftables.py sends.
"""

from __future__ import annotations

from .nftables import ACCEPT, DROP, Bitwise, Cmp, Meta, Payload, Verdict
from .ops import mac_text
from .portconfig import masked, prefix_text
from .record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Sequence

    from .portconfig import Port, Prefix

_ETHERTYPES = {"arp": 0x0806, "ip": 0x0800, "ip6": 0x86DD}
_UDP, _ICMPV6 = 17, 58
_ND_ROUTER_ADVERT, _ND_NEIGHBOR_SOLICIT, _ND_NEIGHBOR_ADVERT = 134, 135, 136
_ANY6 = (bytes(16), 128)


class Rule(Record):
    __slots__ = (
        "text",  # as `nft add rule` takes it
        "expressions",  # a tuple of nftables expressions
    )


def rule(text: str, expressions: list) -> Rule:
    return Rule(text, tuple(expressions))


def link_local(mac: bytes) -> bytes:
    """fe80::/64 with the modified EUI-64 of `mac`: the guest's own link-local address."""
    eui = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:]
    return b"\xfe\x80" + bytes(6) + eui


def _protocol(name: str) -> list:
    return [Meta("protocol"), Cmp("==", _ETHERTYPES[name].to_bytes(2, "big"))]


def _l4(proto: int) -> list:
    return [Meta("l4proto"), Cmp("==", bytes([proto]))]


def _field(base: str, offset: int, value: bytes, op: str = "==") -> list:
    return [Payload(base, offset, len(value)), Cmp(op, value)]


def _prefix(base: str, offset: int, prefix: Prefix) -> list:
    packed, length = prefix
    if length == len(packed) * 8:
        return _field(base, offset, packed)
    mask = masked(b"\xff" * len(packed), length)
    return [Payload(base, offset, len(packed)), Bitwise(mask), Cmp("==", packed)]


def mac_rules(mac: bytes) -> List[Rule]:
    shown = mac_text(mac)
    rules = [
        rule(f"ether saddr != {shown} drop", _field("ll", 6, mac, "!=") + [Verdict(DROP)]),
        rule(f"meta protocol arp arp saddr ether != {shown} drop",
             _protocol("arp") + _field("network", 8, mac, "!=") + [Verdict(DROP)]),
    ]
    # The link-layer option right after a solicitation's or advertisement's target:
    # IPv6 header (40) + ICMPv6 type..target (24) + option type and length (2).
    for kind, name in ((_ND_NEIGHBOR_SOLICIT, "nd-neighbor-solicit"), (_ND_NEIGHBOR_ADVERT, "nd-neighbor-advert")):
        rules.append(rule(f"meta protocol ip6 icmpv6 type {name} @nh,528,48 != {shown} drop",
                          _protocol("ip6") + _l4(_ICMPV6) + _field("transport", 0, bytes([kind]))
                          + _field("network", 66, mac, "!=") + [Verdict(DROP)]))
    return rules


def ip_rules(mac: bytes, ipv4: Sequence[Prefix], ipv6: Sequence[Prefix]) -> List[Rule]:
    rules = [
        rule("meta protocol ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
             _protocol("ip") + _field("network", 12, bytes(4)) + _field("network", 16, b"\xff" * 4)
             + _l4(_UDP) + _field("transport", 0, (68).to_bytes(2, "big"))
             + _field("transport", 2, (67).to_bytes(2, "big")) + [Verdict(ACCEPT)]),
        rule("meta protocol ip udp sport 67 drop",
             _protocol("ip") + _l4(_UDP) + _field("transport", 0, (67).to_bytes(2, "big")) + [Verdict(DROP)]),
        rule("meta protocol arp arp saddr ip 0.0.0.0 accept",
             _protocol("arp") + _field("network", 14, bytes(4)) + [Verdict(ACCEPT)]),
    ]
    for prefix in ipv4:
        rules.append(rule(f"meta protocol arp arp saddr ip {prefix_text(prefix)} accept",
                          _protocol("arp") + _prefix("network", 14, prefix) + [Verdict(ACCEPT)]))
    rules.append(rule("meta protocol arp drop", _protocol("arp") + [Verdict(DROP)]))
    for prefix in ipv4:
        rules.append(rule(f"meta protocol ip ip saddr {prefix_text(prefix)} accept",
                          _protocol("ip") + _prefix("network", 12, prefix) + [Verdict(ACCEPT)]))
    rules.append(rule("meta protocol ip drop", _protocol("ip") + [Verdict(DROP)]))
    rules += [
        rule("meta protocol ip6 icmpv6 type nd-router-advert drop",
             _protocol("ip6") + _l4(_ICMPV6) + _field("transport", 0, bytes([_ND_ROUTER_ADVERT]))
             + [Verdict(DROP)]),
        rule("meta protocol ip6 udp sport 547 drop",
             _protocol("ip6") + _l4(_UDP) + _field("transport", 0, (547).to_bytes(2, "big")) + [Verdict(DROP)]),
    ]
    for prefix in (_ANY6, (link_local(mac), 128), *ipv6):
        rules.append(rule(f"meta protocol ip6 ip6 saddr {prefix_text(prefix)} accept",
                          _protocol("ip6") + _prefix("network", 8, prefix) + [Verdict(ACCEPT)]))
    rules.append(rule("drop", [Verdict(DROP)]))  # IPv6 from elsewhere, other ethertypes
    return rules


def port_rules(mode: str, mac: bytes, port: Optional[Port]) -> List[Rule]:
    """The rules of a TAP under `mode` ("mac" or "ip")."""
    rules = mac_rules(mac)
    if mode == "ip":
        rules += ip_rules(mac, port.ipv4 if port else (), port.ipv6 if port else ())
    return rules


# --- the guest's MAC from the calling QEMU ----------------------------------------------

def _nic_macs(args: Sequence[str], backend: str, matches) -> List[Optional[str]]:
    """The mac= of every NIC in QEMU's arguments whose backend is of kind `backend`
    with settings `matches` accepts: `-netdev KIND,id=ID,...` with
    `-device ...,netdev=ID,mac=M`, or `-nic KIND,...,mac=M`."""
    from .qemuopts import split_opts

    netdevs, devices, macs = set(), [], []
    for flag, value in zip(args, args[1:]):
        flag = flag.lstrip("-")
        if flag not in ("netdev", "nic", "device"):
            continue
        options = split_opts(value)
        settings = {k: v for k, v in options[1:]}
        if flag == "device":
            devices.append(settings)
        elif options[0][0] == backend and matches(settings):
            if flag == "nic":
                macs.append(settings.get("mac"))
            elif settings.get("id"):
                netdevs.add(settings["id"])
    return macs + [settings.get("mac") for settings in devices if settings.get("netdev") in netdevs]


def nic_mac(args: Sequence[str], tap: str) -> Optional[str]:
    """The mac= of the NIC whose backend is the TAP `tap` (`ifname=TAP`)."""
    return next((mac for mac in _nic_macs(args, "tap", lambda s: s.get("ifname") == tap) if mac), None)


def _cmdline(pid: int) -> Optional[List[str]]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")]


def caller_nic_mac(tap: str, pid: int) -> Optional[str]:
    """nic_mac of the process `pid` (the QEMU that runs the hook), or None."""
    args = _cmdline(pid)
    return nic_mac(args, tap) if args is not None else None


def bridge_nic_mac(args: Sequence[str], br: str) -> Optional[str]:
    """The mac= of the one NIC whose backend is `-netdev bridge` (or `-nic bridge`) on
    `br` (br= defaults to br0, as in QEMU); None when there is none or more than one
    (then the helper's request cannot tell which NIC it is for)."""
    macs = _nic_macs(args, "bridge", lambda s: s.get("br", "br0") == br)
    return macs[0] if len(macs) == 1 else None


def caller_bridge_nic_mac(br: str, pid: int) -> Optional[str]:
    """bridge_nic_mac of the process `pid` (the QEMU that ran the bridge helper)."""
    args = _cmdline(pid)
    return bridge_nic_mac(args, br) if args is not None else None


def caller_has_bridge_nic(br: str, pid: int) -> bool:
    """The command line of `pid` has a NIC on `br` through -netdev bridge: False when
    the helper was not run by such a QEMU (libvirt's session mode runs it itself)."""
    args = _cmdline(pid)
    return args is not None and bool(_nic_macs(args, "bridge", lambda s: s.get("br", "br0") == br))
