"""Segments that span hypervisors, with namespaces as the hosts: `up`, the hooks and
`down` build and remove the VXLAN port; guests (namespaces behind veths) on different
hosts reach each other with static remotes, multicast and EVPN through FRR; MTU rules;
`check` and `status`. Oracles: ip -j, bridge -j, vtysh json, ping."""

from __future__ import annotations

import json

import pytest

from conftest import assert_one_line_error
from vxlanlab import (BRIDGE, GROUP, PORT, VNI, Fabric, ping, poll, start_fabric_frr,
                      underlay_address, wait_evpn)

GUESTS = {1: "192.0.2.11", 2: "192.0.2.12", 3: "192.0.2.13"}


@pytest.fixture
def fabric(make_netns):
    made = Fabric(make_netns)
    yield made
    made.cleanup()


def guests(fabric: Fabric) -> dict:
    return {h.index: fabric.guest_ns(h, GUESTS[h.index]) for h in fabric.hosts}


def assert_all_pairs_ping(fabric: Fabric, ns_of: dict, size: int = 56) -> None:
    for a in ns_of:
        for b in ns_of:
            if a != b:
                assert ping(ns_of[a], GUESTS[b], size), f"guest {a} -> guest {b}, {size} bytes"


def details(host, name: str) -> dict:
    link = host.ns.link(name)
    assert link is not None, f"{name} missing on {host.ns.name}"
    return link


def assert_ifup_fails_changing_nothing(host, status: int, fragment: str) -> None:
    """ifup of a fresh TAP fails with `status` and one line, and every link is as before."""
    holder = host.ns.hold_taps("vmtap1")
    before = host.ns.snapshot()
    done = host.hooks.run(host.ns, f"ifup-{BRIDGE}", "vmtap1")
    assert_one_line_error(done, status, fragment)
    assert host.ns.snapshot() == before
    host.ns.release(holder)


def test_static_remotes_carry_full_size_frames_and_follow_the_config(fabric):
    fabric.configure("static")
    fabric.up()
    for host in fabric.hosts:
        vx = details(host, PORT)
        data = vx["linkinfo"]["info_data"]
        assert (data["id"], data["local"], data["port"]) == (VNI, host.address, 4789)
        assert vx["master"] == BRIDGE and vx["mtu"] == 1500  # 1550 underlay - 50
        assert details(host, BRIDGE)["mtu"] == 1500
        assert host.flood() == sorted(underlay_address(i) for i in (1, 2, 3) if i != host.index)
    assert_all_pairs_ping(fabric, guests(fabric), size=1472)

    # Host 1 drops host 3 and gains a fourth address: a second `up` follows the config.
    h1 = fabric.hosts[0]
    h1.hooks.write_config(h1.config("static", 3, remotes=[underlay_address(2),
                                                          underlay_address(4)]))
    done = h1.cli("-v", "up")
    assert done.returncode == 0, done.stderr
    assert h1.flood() == [underlay_address(2), underlay_address(4)]
    assert f"bridge fdb del 00:00:00:00:00:00 dev {PORT} dst {underlay_address(3)}" in done.stdout

    # A TAP the hook attaches takes the bridge's MTU.
    holder = h1.ns.hold_taps("vmtap1")
    done = h1.hooks.run(h1.ns, f"ifup-{BRIDGE}", "vmtap1")
    assert done.returncode == 0, done.stderr
    assert details(h1, "vmtap1")["master"] == BRIDGE and details(h1, "vmtap1")["mtu"] == 1500
    h1.ns.release(holder)

    # `down` removes the bridge and the VXLAN link, and nothing else.
    h1.ns.ip("link", "set", "vm1", "nomaster")
    done = h1.cli("down")
    assert done.returncode == 0, done.stderr
    assert h1.ns.link(BRIDGE) is None and h1.ns.link(PORT) is None
    assert details(h1, "eth0")["operstate"] == "UP" and h1.ns.link("vm1") is not None


def test_multicast_group_carries_guest_traffic(fabric):
    fabric.configure("multicast")
    fabric.up()
    for host in fabric.hosts:
        assert details(host, PORT)["linkinfo"]["info_data"]["group"] == GROUP
        assert host.flood() == [GROUP]  # the kernel's default remote, nothing of ours
    assert_all_pairs_ping(fabric, guests(fabric), size=1472)


def test_too_small_underlay_is_found_by_check_and_refused_by_ifup(make_netns):
    fabric = Fabric(make_netns, count=2, underlay_mtu=1500)
    try:
        fabric.configure("static", mtu=1500)
        h1 = fabric.hosts[0]
        done = h1.cli("check", "--json")
        assert done.returncode == 1, done.stdout
        fails = [f for f in json.loads(done.stdout)["findings"] if f["severity"] == "fail"]
        assert [f["check"] for f in fails] == ["vxlan.mtu"], fails
        assert "carries at most 1450" in fails[0]["message"]

        assert_ifup_fails_changing_nothing(h1, 69, "carries at most 1450 on vxlan5007")

        # Without mtu the bridge follows the underlay (1450): small frames cross, a
        # 1500-byte packet with DF does not (the bridge drops it; nothing fragments).
        fabric.configure("static")
        fabric.up()
        assert details(h1, BRIDGE)["mtu"] == 1450
        ns = {h.index: fabric.guest_ns(h, GUESTS[h.index]) for h in fabric.hosts}
        assert ping(ns[1], GUESTS[2], 1422)
        assert not ping(ns[1], GUESTS[2], 1472, deadline=3)
        warned = [f for f in json.loads(h1.cli("check", "--json").stdout)["findings"]
                  if f["check"] == "vxlan.mtu"]
        assert warned[0]["severity"] == "warn" and "host_mtu=1450" in warned[0]["message"]
    finally:
        fabric.cleanup()


def test_a_failed_ifup_undoes_the_bridge_it_built(make_netns):
    fabric = Fabric(make_netns, count=2)
    try:
        fabric.configure("static")
        h1 = fabric.hosts[0]
        # Someone else's VXLAN link already has the VNI: the kernel refuses ours after
        # the bridge was made, and the run is rolled back.
        h1.ns.ip("link", "add", "theirs", "type", "vxlan", "id", str(VNI), "local",
                 h1.address, "dev", "eth0", "dstport", "4789")
        assert_ifup_fails_changing_nothing(h1, 71, "ip link add vxlan5007 type vxlan id 5007")

        # `local` must be this host's.
        h1.ns.ip("link", "del", "theirs")
        h1.ns.ip("addr", "flush", "dev", "eth0")
        done = h1.cli("up")
        assert done.returncode == 69, done.stderr
        assert "203.0.113.1 is not an address of this host" in done.stderr
        assert h1.ns.link(BRIDGE) is None
    finally:
        fabric.cleanup()


def test_evpn_through_frr_learns_vteps_and_guest_macs(fabric):
    fabric.configure("evpn")
    fabric.up()
    for host in fabric.hosts:
        vx = details(host, PORT)
        assert vx["linkinfo"]["info_data"]["learning"] is False
        port = vx["linkinfo"]["info_slave_data"]
        assert port["learning"] is False and port["neigh_suppress"] is True
    start_fabric_frr(fabric)
    wait_evpn(fabric)
    for host in fabric.hosts:  # zebra installed the other VTEPs' flood entries
        others = sorted(underlay_address(i) for i in (1, 2, 3) if i != host.index)
        assert poll(lambda: host.flood() == others, 30), host.flood()
    ns = guests(fabric)
    assert_all_pairs_ping(fabric, ns, size=1472)

    mac = ns[1].link("eth0")["address"]
    for host in fabric.hosts[1:]:
        assert poll(lambda: mac in host.remote_macs(), 30), host.fdb()
        entry = host.remote_macs()[mac]
        assert "extern_learn" in entry.get("flags", []) and entry["dst"] == underlay_address(1)

    h1, h2 = fabric.hosts[0], fabric.hosts[1]
    report = json.loads(h2.cli("check", "--json").stdout)
    evpn = {(f["check"], f["subject"]): f["severity"] for f in report["findings"]
            if f["check"].startswith("evpn")}
    assert evpn == {("evpn.session", underlay_address(1)): "ok",
                    ("evpn.session", underlay_address(3)): "ok",
                    ("evpn.vni", str(VNI)): "ok"}, report
    status = json.loads(h2.cli("status", "--json").stdout)["segments"][0]["vxlan"]
    assert status["vteps"] == [underlay_address(1), underlay_address(3)]
    assert {"mac": mac, "vtep": underlay_address(1), "extern_learn": True} in status["remote_macs"]

    # The guest's port leaves host 1's bridge: its MAC is withdrawn everywhere.
    h1.ns.ip("link", "set", "vm1", "nomaster")
    for host in fabric.hosts[1:]:
        assert poll(lambda: mac not in host.remote_macs(), 30), host.fdb()

    # bgpd down on host 3: check says the session is not established.
    fabric.hosts[2].stop_frr()
    assert poll(lambda: h2.cli("check").returncode == 1, 60)
