"""Port security, isolation and rate limits on TAPs the hooks attach.

A host namespace runs the real hook; a LAN namespace behind the uplink captures what
leaves the bridge. The test holds each TAP as QEMU does and writes the guest's frames
into it (ARP, IPv4, DHCP, IPv6, router advertisements), so every rule is exercised by
frames crossing a real bridge. Oracles: `nft -j list ruleset`, `bridge -j link`,
`tc -j qdisc`, `ip -j link`, and what the LAN side captures.
"""

from __future__ import annotations

import json
import os
import shlex
import struct
import time

import pytest

import frames
from conftest import assert_one_line_error, planned_commands, sh

GUEST_MAC = "52:54:00:12:34:56"
OTHER_MAC = "52:54:00:ab:cd:ef"
LAN_MAC = "02:00:00:00:0f:01"
GATEWAY = "192.0.2.1"
GUEST_IP = "192.0.2.10"
EX_UNAVAILABLE = 69

CONFIG = f"""\
[defaults]
port_security = "{{mode}}"

[vlan.0]
bridge = "br0"
uplink = "eth0"
{{extra}}
[port."tap0"]
mac = "{GUEST_MAC}"
ipv4 = ["{GUEST_IP}", "198.51.100.0/24"]
ipv6 = ["2001:db8::10"]
"""


def config(mode: str = "ip", extra: str = "") -> str:
    return CONFIG.format(mode=mode, extra=extra)


# --- frames a guest sends ------------------------------------------------------------------

def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                         socket_aton(src), socket_aton(dst))
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def socket_aton(text: str) -> bytes:
    import socket

    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def udp(sport: int, dport: int, payload: bytes = b"qih") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, 255,
                       socket_aton(src), socket_aton(dst)) + payload


def arp(sender_mac: str, sender_ip: str, target_ip: str, op: int = 2) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, frames.mac(sender_mac),
                       socket_aton(sender_ip), b"\0" * 6, socket_aton(target_ip))


def frame(src_mac: str, ethertype: int, payload: bytes, dst: bytes = frames.BROADCAST) -> bytes:
    return frames.ethernet_frame(dst, frames.mac(src_mac), payload, ethertype=ethertype)


def ping(src_ip: str, src_mac: str = GUEST_MAC, dst_ip: str = GATEWAY) -> bytes:
    echo = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"qih-port-security"
    echo = echo[:2] + struct.pack("!H", checksum(echo)) + echo[4:]
    return frame(src_mac, 0x0800, ipv4(src_ip, dst_ip, 1, echo), frames.mac(LAN_MAC))


def link_local(mac: str) -> str:
    raw = bytearray(frames.mac(mac))
    raw[0] ^= 2
    return "fe80::%02x%02x:%02xff:fe%02x:%02x%02x" % tuple(raw)


def icmpv6(kind: int, body: bytes) -> bytes:
    return struct.pack("!BBH", kind, 0, 0) + body  # the checksum is not checked on the way


# --- scenery -------------------------------------------------------------------------------------
def same_frame(got: bytes, sent: bytes) -> bool:
    """The frame sent, as it arrives: the padding to 60 bytes may be gone."""
    n = min(len(got), len(sent), 14 + 28)
    return len(got) >= 14 + 20 and got[6:n] == sent[6:n]


class Wire:
    """TAPs held by this process in the host namespace, and the LAN's capture."""

    def __init__(self, host, lan) -> None:
        self.host, self.lan, self.taps = host, lan, {}
        with frames.netns_entered(lan.name):
            self.capture = frames.Capture("lan0")

    def tap(self, name: str) -> int:
        with frames.netns_entered(self.host.name):
            self.taps[name] = frames.open_tap(name)
        return self.taps[name]

    def close(self, name: str) -> None:
        os.close(self.taps.pop(name))

    def reaches_lan(self, data: bytes, tap: str = "tap0") -> bool:
        """Whether the frame the guest of `tap` sends arrives on the LAN."""
        self.capture.frames(timeout=0)  # drop what came before
        os.write(self.taps[tap], data)
        return any(same_frame(f.data, data) for f in self.capture.frames(timeout=0.3))


    def close_all(self) -> None:
        self.capture.close()
        for fd in self.taps.values():
            os.close(fd)


@pytest.fixture
def wire(make_netns, hooks):
    host, lan = make_netns("qih-ps"), make_netns("qih-lan")
    host.ip("link", "add", "eth0", "type", "veth", "peer", "name", "lan0", "netns", lan.name)
    host.ip("link", "set", "eth0", "up")
    host.run("ethtool", "-K", "eth0", "gro", "on", check=True)
    lan.ip("link", "set", "lan0", "address", LAN_MAC, "up")
    made = Wire(host, lan)
    yield made
    made.close_all()


def ifup(wire, hooks, tap: str = "tap0", **env) -> None:
    done = hooks.run(wire.host, "ifup-br0", tap, **env)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    deadline = time.monotonic() + 5
    while wire.host.link(tap)["operstate"] not in ("UP", "UNKNOWN") and time.monotonic() < deadline:
        time.sleep(0.05)
    wire.host.run("bridge", "link", "set", "dev", tap, "learning", "off")  # keep the LAN flooding to us


def ruleset(ns) -> list:
    return json.loads(ns.run("nft", "-j", "list", "ruleset", check=True).stdout)["nftables"]


def port_chain(ns, tap: str):
    """The TAP's chain and its map element, as nft sees them; None when absent."""
    items = ruleset(ns)
    chains = [i["chain"]["name"] for i in items if "chain" in i]
    maps = [i["map"] for i in items if "map" in i and i["map"]["name"] == "ports"]
    elements = {e[0]: e[1]["jump"]["target"] for m in maps for e in m.get("elem", [])}
    rules = [i["rule"] for i in items if "rule" in i and i["rule"]["chain"] == f"port_{tap}"]
    if f"port_{tap}" not in chains:
        assert tap not in elements
        return None
    return elements.get(tap), rules


# --- the rules, as nft sees them ------------------------------------------------------------------

def test_ifup_writes_the_taps_chain_before_it_joins_the_bridge(wire, hooks):
    hooks.write_config(config("ip"))
    wire.tap("tap0")
    ifup(wire, hooks)
    target, rules = port_chain(wire.host, "tap0")
    assert target == "port_tap0"
    assert len(rules) == 19 and rules[-1]["expr"] == [{"drop": None}]
    logged = hooks.logged_commands("ifup", "tap0")
    assert logged.index(next(c for c in logged if c.startswith("nft "))) < \
        logged.index("ip link set dev tap0 master br0")
    planned = planned_commands(hooks.cli(wire.host, "plan", "ifup", "tap0", "--vlan", "0").stdout)
    assert planned[0].startswith("nft 'add chain bridge qemu_ifhooks port_tap0; flush chain")
    nft = planned[0][4:]
    assert shlex.split(nft)[0].count("add rule") == 19  # what the hook wrote, pasteable


def test_ifdown_removes_rules_and_limits_also_when_the_tap_is_gone(wire, hooks):
    hooks.write_config(config("mac", "guest_rx_mbit = 4\nguest_tx_mbit = 8\n"))
    wire.tap("tap0")
    ifup(wire, hooks)
    assert port_chain(wire.host, "tap0") is not None
    assert {"rx-tap0", "tx-tap0"} <= {l["ifname"] for l in wire.host.links()}
    wire.close("tap0")  # QEMU died: no TAP, but its rules and ifb devices stay
    assert port_chain(wire.host, "tap0") is not None
    assert hooks.run(wire.host, "ifdown-br0", "tap0").returncode == 0
    assert port_chain(wire.host, "tap0") is None
    assert not {"rx-tap0", "tx-tap0"} & {l["ifname"] for l in wire.host.links()}


def test_without_the_guests_mac_ifup_refuses_and_attaches_nothing(wire, hooks):
    hooks.write_config(config("mac").replace(f'mac = "{GUEST_MAC}"\n', ""))
    wire.tap("tap0")
    before = wire.host.snapshot()
    done = hooks.run(wire.host, "ifup-br0", "tap0")
    assert_one_line_error(done, EX_UNAVAILABLE, 'port_security = "mac"', 'mac = "..."')
    assert wire.host.snapshot() == before
    assert port_chain(wire.host, "tap0") is None


def test_the_mac_comes_from_the_calling_qemus_command_line(wire, hooks):
    hooks.write_config(config("mac").replace(f'mac = "{GUEST_MAC}"\n', ""))
    wire.tap("tap0")
    qemu_args = ["-netdev", "tap,id=n0,ifname=tap0,script=no", "-device",
                 f"virtio-net-pci,netdev=n0,mac={OTHER_MAC}"]
    # The hook's parent (here a shell, as QEMU would be) has the NIC in its arguments.
    done = wire.host.run("sh", "-c", f'{shlex.quote(str(hooks.entry("ifup-br0")))} tap0; exit $?',
                         "qemu-system-x86_64", *qemu_args, env=hooks.env())
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert wire.reaches_lan(ping(GUEST_IP, OTHER_MAC))
    assert not wire.reaches_lan(ping(GUEST_IP, GUEST_MAC))


# --- what the guest may send -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["mac", "ip"])
def test_a_guest_sends_as_itself_only(wire, hooks, mode):
    hooks.write_config(config(mode))
    wire.tap("tap0")
    ifup(wire, hooks)
    ip_mode = mode == "ip"
    cases = {
        "its own ping": (ping(GUEST_IP), True),
        "a ping from another MAC": (ping(GUEST_IP, OTHER_MAC), False),
        "a ping from its prefix": (ping("198.51.100.77"), True),
        "a ping from an address it was not given": (ping("192.0.2.99"), not ip_mode),
        "its own ARP": (frame(GUEST_MAC, 0x0806, arp(GUEST_MAC, GUEST_IP, GATEWAY, 1)), True),
        "ARP naming another sender MAC": (frame(GUEST_MAC, 0x0806, arp(OTHER_MAC, GUEST_IP, GATEWAY)), False),
        "a forged ARP reply for the gateway": (frame(GUEST_MAC, 0x0806, arp(GUEST_MAC, GATEWAY, GUEST_IP)),
                                               not ip_mode),
        "an ARP probe": (frame(GUEST_MAC, 0x0806, arp(GUEST_MAC, "0.0.0.0", GUEST_IP, 1)), True),
        "a DHCP discover": (frame(GUEST_MAC, 0x0800, ipv4("0.0.0.0", "255.255.255.255", 17, udp(68, 67))),
                            True),
        "a DHCP server reply": (frame(GUEST_MAC, 0x0800, ipv4(GUEST_IP, "255.255.255.255", 17, udp(67, 68))),
                                not ip_mode),
        "IPv6 from its link-local": (frame(GUEST_MAC, 0x86DD, ipv6(link_local(GUEST_MAC), "ff02::1", 17,
                                                                    udp(5000, 5000))), True),
        "IPv6 from its address": (frame(GUEST_MAC, 0x86DD, ipv6("2001:db8::10", "ff02::1", 17, udp(1, 2))), True),
        "IPv6 DAD from ::": (frame(GUEST_MAC, 0x86DD, ipv6("::", "ff02::1:ff00:10", 58,
                                                            icmpv6(135, bytes(4) + socket_aton("2001:db8::10")))),
                             True),
        "IPv6 from a forged address": (frame(GUEST_MAC, 0x86DD, ipv6("2001:db8::99", "ff02::1", 17, udp(1, 2))),
                                       not ip_mode),
        "a router advertisement": (frame(GUEST_MAC, 0x86DD, ipv6(link_local(GUEST_MAC), "ff02::1", 58,
                                                                  icmpv6(134, bytes(12)))), not ip_mode),
        "a neighbour advertisement for another MAC": (frame(GUEST_MAC, 0x86DD, ipv6(
            link_local(GUEST_MAC), "ff02::1", 58,
            icmpv6(136, bytes(4) + socket_aton("2001:db8::10") + b"\x02\x01" + frames.mac(OTHER_MAC)))),
            False),
        "another ethertype": (frame(GUEST_MAC, 0x88B5, b"qih-other-ethertype"), not ip_mode),
    }
    got = {name: wire.reaches_lan(data) for name, (data, _) in cases.items()}
    assert got == {name: allowed for name, (_, allowed) in cases.items()}


def test_traffic_to_the_guest_is_not_filtered(wire, hooks):
    hooks.write_config(config("ip"))
    wire.tap("tap0")
    ifup(wire, hooks)
    with frames.netns_entered(wire.lan.name):
        sender = frames.Capture("lan0")
    with sender:
        data = frames.ethernet_frame(frames.BROADCAST, frames.mac(LAN_MAC), b"qih-to-the-guest" * 4,
                                     ethertype=0x88B5)
        frames.read_tap(wire.taps["tap0"], timeout=0)
        sender.send(data)
        assert any(b"qih-to-the-guest" in f.data for f in frames.read_tap(wire.taps["tap0"], timeout=0.5))


def test_a_new_tap_of_a_killed_vms_name_gets_its_own_rules(wire, hooks):
    """The VM was killed (no downscript): its rules stay until the next ifup of that
    name replaces them, so the old MAC never passes for the new guest."""
    hooks.write_config(config("mac"))
    wire.tap("tap0")
    ifup(wire, hooks)
    wire.close("tap0")
    hooks.write_config(config("mac").replace(GUEST_MAC, OTHER_MAC))
    wire.tap("tap0")
    ifup(wire, hooks)
    assert wire.reaches_lan(ping(GUEST_IP, OTHER_MAC))
    assert not wire.reaches_lan(ping(GUEST_IP, GUEST_MAC))


def test_port_security_off_removes_a_killed_vms_rules(wire, hooks):
    hooks.write_config(config("mac"))
    wire.tap("tap0")
    ifup(wire, hooks)
    wire.close("tap0")
    hooks.write_config(config("off"))
    wire.tap("tap0")
    ifup(wire, hooks)
    assert port_chain(wire.host, "tap0") is None
    assert wire.reaches_lan(ping(GUEST_IP, OTHER_MAC))


# --- isolation and rate limits -----------------------------------------------------------------------

def test_isolated_guests_reach_the_lan_not_each_other(wire, hooks):
    hooks.write_config(config("off", "isolated = true\n"))
    for tap in ("tap0", "tap1"):
        wire.tap(tap)
        ifup(wire, hooks, tap)
    links = json.loads(sh("bridge", "-n", wire.host.name, "-j", "-d", "link").stdout)
    assert {l["ifname"]: l.get("isolated") for l in links} == {"eth0": False, "tap0": True, "tap1": True}
    hello = frame(GUEST_MAC, 0x88B5, b"qih-isolated-hello" * 3)

    def tap1_hears_hello() -> bool:
        frames.read_tap(wire.taps["tap1"], timeout=0)
        assert wire.reaches_lan(hello, "tap0")  # both reach the LAN, isolated or not
        return any(b"qih-isolated-hello" in f.data for f in frames.read_tap(wire.taps["tap1"], timeout=0.3))
    assert not tap1_hears_hello()
    assert wire.reaches_lan(frame(OTHER_MAC, 0x88B5, b"qih-from-tap1" * 3), "tap1")
    wire.host.run("bridge", "link", "set", "dev", "tap0", "isolated", "off", check=True)
    assert tap1_hears_hello()  # the control: without isolation it does


def throughput_mbit(send, receive, seconds: float = 2.0) -> float:
    """Send as fast as `send()` goes for `seconds`; what `receive()` got, in Mbit/s."""
    received = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(20):
            send()
        received += receive()
    end = time.monotonic() + 0.3  # what the token bucket still had queued
    while time.monotonic() < end:
        received += receive()
    return received * 8 / seconds / 1e6


def test_rate_limits_hold_in_each_direction(wire, hooks):
    hooks.write_config(config("off", "guest_rx_mbit = 4\nguest_tx_mbit = 8\n"))
    wire.tap("tap0")
    ifup(wire, hooks)
    qdiscs = json.loads(sh("tc", "-n", wire.host.name, "-j", "qdisc", "show").stdout)
    rates = {q["dev"]: q["options"]["rate"] for q in qdiscs if q["kind"] == "tbf"}
    assert rates == {"rx-tap0": 500000, "tx-tap0": 1000000}  # bytes per second
    payload = b"q" * 1400
    to_lan = frame(GUEST_MAC, 0x88B5, payload)
    tap = wire.taps["tap0"]

    def lan_got() -> int:
        return sum(len(f.data) for f in wire.capture.frames(timeout=0.001) if f.ethertype == 0x88B5)
    sent = throughput_mbit(lambda: os.write(tap, to_lan), lan_got)
    assert 8 * 0.8 <= sent <= 8 * 1.2, sent

    with frames.netns_entered(wire.lan.name):
        lan = frames.Capture("lan0")
    to_guest = frames.ethernet_frame(frames.mac(GUEST_MAC), frames.mac(LAN_MAC), payload, ethertype=0x88B5)
    wire.host.run("bridge", "fdb", "replace", GUEST_MAC, "dev", "tap0", "master", "static", check=True)

    def guest_got() -> int:
        return sum(len(f.data) for f in frames.read_tap(tap, timeout=0.001) if f.ethertype == 0x88B5)
    with lan:
        received = throughput_mbit(lambda: lan.send(to_guest), guest_got)
    assert 4 * 0.8 <= received <= 4 * 1.2, received


# --- status, check and the sweep ------------------------------------------------------------------

def test_status_check_and_up_see_and_sweep_what_a_killed_vm_left(wire, hooks):
    hooks.write_config(config("ip", "isolated = true\nguest_rx_mbit = 4\n"))
    wire.tap("tap0")
    ifup(wire, hooks)
    status = json.loads(hooks.cli(wire.host, "status", "--json").stdout)
    (port,) = [p for p in status["segments"][0]["ports"] if p["name"] == "tap0"]
    assert (port["port_security"], port["isolated"], port["rx_mbit"], port["tx_mbit"]) == ("ip", True, 4, None)
    assert "port security ip, isolated, rx 4 Mbit/s" in hooks.cli(wire.host, "status").stdout

    # A TAP on the guarded segment whose rules went missing is a failure.
    wire.host.run("nft", "delete", "element", "bridge", "qemu_ifhooks", "ports", '{ "tap0" }', check=True)
    done = hooks.cli(wire.host, "check", "--json")
    findings = [f for f in json.loads(done.stdout)["findings"] if f["check"] == "port_security"]
    assert [(f["severity"], f["subject"]) for f in findings] == [("fail", "tap0")], findings
    ifup(wire, hooks)

    wire.close("tap0")  # killed: rules and ifb stay
    findings = [f for f in json.loads(hooks.cli(wire.host, "check", "--json").stdout)["findings"]
                if f["check"] == "port_security"]
    assert [(f["severity"], f["subject"]) for f in findings] == [("warn", "tap0")], findings
    done = hooks.cli(wire.host, "up")
    assert done.returncode == 0 and "swept tap0: its TAP is gone" in done.stdout, done.stdout + done.stderr
    assert port_chain(wire.host, "tap0") is None
    assert "rx-tap0" not in {l["ifname"] for l in wire.host.links()}
