"""Segments that span hosts, without the kernel: the `vxlan` and `[evpn]` schema (its
invalid cases are in tests/configs/invalid/vxlan-*.toml), the planned operations (and their ip/bridge text), the MTU rules, the FRR stanza."""

from __future__ import annotations

import pytest

from qemu_ifhooks.config import parse_config
from qemu_ifhooks.errors import ConfigError, UnavailableError
from qemu_ifhooks.frr import frr_stanza, sessions_of
from qemu_ifhooks.netlink import IFF_UP, Link
from qemu_ifhooks.buildplan import plan_teardown
from qemu_ifhooks.plan import plan_bridge
from qemu_ifhooks.vxlan import VxlanConfig, VxlanScene, plan_flood
from qemu_ifhooks.vxlannl import Vxlan

STATIC = 'vxlan = { vni = 5007, local = "203.0.113.1", dev = "eth0", remotes = ["203.0.113.2"] }'


def config(text: str):
    return parse_config(__import__("tomllib").loads(text), "c.toml")


def segment_text(vxlan: str = STATIC, extra: str = "") -> str:
    return f'[vlan.7]\nbridge = "br7"\n{vxlan}\n{extra}'


def test_a_static_segment_parses_with_canonical_addresses():
    c = config(segment_text('vxlan = { vni = 7, local = "2001:db8::0:1", dev = "eth0", '
                            'remotes = ["2001:DB8::2"] }'))
    assert c.segments[0].vxlan == VxlanConfig(7, "2001:db8::1", "eth0", ("2001:db8::2",))
    assert c.segments[0].vxlan_port == "vxlan7"


def test_multicast_evpn_and_the_evpn_table_parse():
    c = config(segment_text('vxlan = { vni = 8, local = "203.0.113.1", dev = "eth0", '
                            'group = "239.1.1.8" }') +
               '[vlan.9]\nbridge = "br9"\nvxlan = { vni = 9, local = "203.0.113.1", '
               'dev = "eth0", evpn = true }\n'
               '[evpn]\nasn = 65000\npeers = ["203.0.113.2", "203.0.113.3"]\n')
    assert [s.vxlan.mode for s in c.segments] == ["multicast", "evpn"]
    assert c.evpn.asn == 65000 and c.evpn.peers == ("203.0.113.2", "203.0.113.3")


# Invalid configs: tests/configs/invalid/vxlan-*.toml (test_config.py runs them).


# --- plans ------------------------------------------------------------------------------

def link(name: str, index: int, kind=None, mtu=1500, up=True, master=0) -> Link:
    return Link(index, name, kind, None, IFF_UP if up else 0, mtu, master, b"\x02" * 6, 6)


UNDERLAY = link("eth0", 2)


def vx(port_link: Link, vni=5007, learning=True, group=None) -> Vxlan:
    return Vxlan(port_link, vni, "203.0.113.1", UNDERLAY.index, 4789, group, learning)


def commands(plan) -> list:
    return [op.command() for op in plan.ops]


def test_first_ifup_plans_the_bridge_the_vxlan_port_and_the_flood_list():
    segment = config(segment_text()).segments[0]
    scene = VxlanScene(None, UNDERLAY, (), {"203.0.113.1"})
    plan = plan_bridge(segment, None, None, machine_id=b"m", vxlan=scene)
    assert commands(plan)[1:] == [
        "ip link set dev br7 mtu 1450",
        "ip link add vxlan5007 type vxlan id 5007 local 203.0.113.1 dev eth0 dstport 4789",
        "ip link set dev vxlan5007 alias 'qemu-ifhooks: vlan.7'",
        "ip link set dev vxlan5007 master br7",
        "bridge fdb append 00:00:00:00:00:00 dev vxlan5007 dst 203.0.113.2",
        "ip link set dev vxlan5007 up",
        "ip link set dev br7 up"]


def test_evpn_port_has_no_learning_and_suppresses_neighbours():
    segment = config(segment_text('vxlan = { vni = 9, local = "203.0.113.1", dev = "eth0", '
                                  'evpn = true }')).segments[0]
    plan = plan_bridge(segment, None, None, vxlan=VxlanScene(None, UNDERLAY, (), {"203.0.113.1"}))
    assert "ip link add vxlan9 type vxlan id 9 local 203.0.113.1 dev eth0 dstport 4789 " \
           "nolearning" in commands(plan)
    assert "bridge link set dev vxlan9 learning off neigh_suppress on" in commands(plan)
    assert not any("fdb" in c for c in commands(plan))


def test_steady_state_plans_nothing_and_a_changed_list_only_the_difference():
    segment = config(segment_text()).segments[0]
    bridge = link("br7", 4, "bridge", mtu=1450)
    port = vx(link("vxlan5007", 5, "vxlan", mtu=1450, master=4))
    assert plan_bridge(segment, bridge, None, vxlan=VxlanScene(port, UNDERLAY,
                                                              ("203.0.113.2",))).ops == ()
    assert [op.command() for op in plan_flood("vx", ["b", "c"], ["a", "b"])] == [
        "bridge fdb append 00:00:00:00:00:00 dev vx dst c",
        "bridge fdb del 00:00:00:00:00:00 dev vx dst a"]


def test_refusals_before_anything_is_planned():
    segment = config(segment_text()).segments[0]
    with pytest.raises(UnavailableError, match="203.0.113.1 is not an address of this host"):
        plan_bridge(segment, None, None, vxlan=VxlanScene(None, UNDERLAY, (), {"192.0.2.1"}))
    with pytest.raises(UnavailableError, match="underlay eth0 of vlan.7.vxlan does not exist"):
        plan_bridge(segment, None, None, vxlan=VxlanScene(None, None, (), ()))
    other = vx(link("vxlan5007", 5, "vxlan"), vni=6)
    with pytest.raises(UnavailableError, match="vxlan5007 exists with VNI 6 \\(want 5007\\)"):
        plan_bridge(segment, None, None, vxlan=VxlanScene(other, UNDERLAY))
    pinned = config(segment_text(extra="mtu = 1500\n")).segments[0]
    with pytest.raises(UnavailableError, match="carries at most 1450 on vxlan5007"):
        plan_bridge(pinned, None, None, vxlan=VxlanScene(None, UNDERLAY, (), {"203.0.113.1"}))
    big = UNDERLAY.replace(mtu=1550)
    plan = plan_bridge(pinned, None, None, vxlan=VxlanScene(None, big, (), {"203.0.113.1"}))
    assert "ip link set dev br7 mtu 1500" in commands(plan)


def test_down_deletes_the_vxlan_link_it_made_and_counts_it_as_its_own_port():
    segment = config(segment_text()).segments[0]
    bridge = link("br7", 4, "bridge")
    made = link("vxlan5007", 5, "vxlan", master=4).replace(alias="qemu-ifhooks: vlan.7")
    plan = plan_teardown(segment, bridge, [made], False, vxlan_port=made)
    assert commands(plan) == ["ip link del dev br7", "ip link del dev vxlan5007"]
    theirs = made.replace(alias=None)
    assert commands(plan_teardown(segment, bridge, [theirs], False, vxlan_port=theirs)) == [
        "ip link del dev br7"]


def test_frr_stanza():
    c = config(segment_text('vxlan = { vni = 9, local = "203.0.113.1", dev = "eth0", '
                            'evpn = true }') +
               '[evpn]\nasn = 65000\npeers = ["203.0.113.2", "203.0.113.3"]\n')
    lines = frr_stanza(c).splitlines()
    assert lines[2:] == [
        "router bgp 65000", " bgp router-id 203.0.113.1", " no bgp default ipv4-unicast",
        " neighbor 203.0.113.2 remote-as 65000", " neighbor 203.0.113.3 remote-as 65000",
        " !", " address-family l2vpn evpn", "  neighbor 203.0.113.2 activate",
        "  neighbor 203.0.113.3 activate", "  advertise-all-vni", " exit-address-family",
        "exit"]
    with pytest.raises(ConfigError, match="evpn: missing"):
        frr_stanza(config(segment_text()))


def test_sessions_of_reads_both_json_shapes():
    peers = {"peers": {"203.0.113.2": {"state": "Established"}}}
    assert sessions_of(peers) == (("203.0.113.2", "Established"),)
    assert sessions_of({"default": peers}) == (("203.0.113.2", "Established"),)
