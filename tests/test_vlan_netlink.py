"""802.1Q in qemu_ifhooks.netlink: VLAN subinterfaces, VLAN-aware bridges, bridge VLANs.

This machine's kernel has neither 8021q nor bridge VLAN filtering, so the codec is
checked in a full kernel: the vm_* functions run inside the full-kernel guest
(tests/fullkernel.py, one boot for the whole tier), each in namespaces of its own,
against iproute2 (`ip -j -d link`, `bridge -j vlan`) and pyroute2, and with traffic: frames written
into TAP fds that the test holds, as QEMU does, read on the far side of the uplink
with AF_PACKET.  test_in_vm reports each of them here.  On the host itself the
codec must say clearly that the kernel lacks these features.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import fullkernel
from conftest import sh
from vlantraffic import VlanNetns, wire


@pytest.fixture
def vns(make_netns) -> VlanNetns:
    return make_netns("qih-vl", kind=VlanNetns)


# --- on this host: the kernel lacks 8021q and bridge VLAN filtering -------------------------


def test_host_kernel_lacks_8021q_clearly(vns):
    vns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    oracle = vns.ip("link", "add", "link", "va", "name", "va.5", "type", "vlan", "id", "5", check=False)
    if oracle.returncode == 0:
        pytest.skip("this kernel has 802.1Q; the full-kernel checks cover it")
    assert "Unknown device type" in oracle.stderr
    got = vns.probe([
        {"op": "create_vlan", "name": "va.6", "parent": vns.index("va"), "vid": 6},
        {"op": "create_vlan", "name": "lo.6", "parent": 1, "vid": 6, "mtu": 1400},
    ])
    for err in got:
        assert err["error"] == "MissingKernelFeature"
        assert err["errno"] == errno.EOPNOTSUPP
        assert err["extack"] == "Unknown device type"  # the kernel's own words
        assert err["feature"] == "CONFIG_VLAN_8021Q"
        assert "802.1Q" in err["text"] and "CONFIG_VLAN_8021Q" in err["text"]
    assert sorted(link["ifname"] for link in vns.links()) == ["lo", "va", "vb"]


def test_host_kernel_lacks_bridge_vlan_filtering_clearly(vns):
    oracle = vns.ip("link", "add", "brx", "type", "bridge", "vlan_filtering", "1", check=False)
    if oracle.returncode == 0:
        pytest.skip("this kernel has bridge VLAN filtering; the full-kernel checks cover it")
    assert "Operation not supported" in oracle.stderr
    vns.ip("link", "add", "br0", "type", "bridge")
    vns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    vns.ip("link", "set", "va", "master", "br0")
    br0, va, vb = (vns.index(n) for n in ("br0", "va", "vb"))
    got = vns.probe([
        {"op": "create_bridge", "name": "br1", "vlan_filtering": True},
        {"op": "create_bridge", "name": "br2", "vlan_filtering": True, "default_pvid": 0},
        {"op": "bridge_vlan_add", "index": va, "vid": 101, "pvid": True, "untagged": True},
        {"op": "bridge_vlan_add", "index": br0, "vid": 101, "self_": True},
        {"op": "bridge_vlan_add", "index": vb, "vid": 101},  # not a port: EOPNOTSUPP, but not this
        {"op": "bridge_vlans", "index": va},
        {"op": "get_link", "name": "br0"},
        # Without vlan_filtering nothing VLAN-ish is sent, and such a kernel ignores
        # IFLA_BR_VLAN_DEFAULT_PVID: plain bridges still work.
        {"op": "create_bridge", "name": "br3", "default_pvid": 0},
    ])
    for err in got[:4]:
        assert err["error"] == "MissingKernelFeature", err
        assert err["errno"] == errno.EOPNOTSUPP
        assert err["extack"] is None  # the kernel gives no text here
        assert err["feature"] == "CONFIG_BRIDGE_VLAN_FILTERING"
        assert "CONFIG_BRIDGE_VLAN_FILTERING" in err["text"]
    assert (got[4]["error"], got[4]["errno"]) == ("OSError", errno.EOPNOTSUPP)
    assert got[5] == []
    # The capability shows in the bridge itself: no default PVID reported.
    assert (got[6]["vlan_filtering"], got[6]["vlan_default_pvid"]) == (False, None)
    assert got[7] is None
    assert sorted(link["ifname"] for link in vns.links()) == ["br0", "br3", "lo", "va", "vb"]


def test_invalid_vlan_ids_are_refused_locally():
    from qemu_ifhooks.bridgevlan import bridge_vlan_add
    from qemu_ifhooks.linkbuild import create_bridge, create_vlan
    from qemu_ifhooks.netlink import Netlink

    with Netlink() as nl:
        for vid in (0, 4095, -1, True, "5"):
            with pytest.raises(ValueError):
                create_vlan(nl, "x.1", parent=1, vid=vid)
            with pytest.raises(ValueError):
                bridge_vlan_add(nl, 1, vid)
        with pytest.raises(ValueError):
            create_bridge(nl, "brx", vlan_filtering=True, default_pvid=4095)
        with pytest.raises(ValueError):
            create_vlan(nl, "x.1", parent=0, vid=5)


def test_vlan_fields_decoded_from_messages():
    """IFLA_LINK, IFLA_VLAN_ID and the bridge's VLAN attributes, from hand-made messages."""
    from qemu_ifhooks import netlink as m
    from qemu_ifhooks.nlsocket import _nested, _u16_attr

    def msg(kind: bytes, *data: bytes, extra: bytes = b"") -> bytes:
        info = m._attr(m._IFLA_INFO_KIND, kind) + (_nested(m._IFLA_INFO_DATA, *data) if data else b"")
        return (m._IFINFOMSG.pack(0, 1, 9, 0, 0) + m._attr(m._IFLA_IFNAME, b"x0\0") + extra
                + _nested(m._IFLA_LINKINFO, info))

    vlan = m._parse_link(msg(b"vlan\0", _u16_attr(m._IFLA_VLAN_ID, 101), extra=m._u32_attr(m._IFLA_LINK, 4)))
    assert (vlan.kind, vlan.vlan_id, vlan.link, vlan.vlan_filtering) == ("vlan", 101, 4, None)
    br = m._parse_link(msg(b"bridge\0", m._attr(m._IFLA_BR_VLAN_FILTERING, b"\x01"),
                           _u16_attr(m._IFLA_BR_VLAN_DEFAULT_PVID, 0)))
    assert (br.vlan_filtering, br.vlan_default_pvid, br.vlan_id, br.link) == (True, 0, None, 0)
    old = m._parse_link(msg(b"bridge\0", m._attr(m._IFLA_BR_VLAN_FILTERING, b"\x00")))
    assert (old.vlan_filtering, old.vlan_default_pvid) == (False, None)
    # The VLAN attributes mean something only for their kind.
    veth = m._parse_link(msg(b"veth\0", _u16_attr(m._IFLA_VLAN_ID, 7)))
    assert veth.vlan_id is None and veth.vlan_filtering is None


def test_bridge_vlan_entries_decoded():
    """Entries as the kernel sends them, one per VID, and as ranges (which it does
    only when asked for RTEXT_FILTER_BRVLAN_COMPRESSED); other attributes skipped."""
    from qemu_ifhooks import bridgevlan as m

    def entry(flags: int, vid: int) -> bytes:
        return m._attr(m._IFLA_BRIDGE_VLAN_INFO, m._BRIDGE_VLAN_INFO.pack(flags, vid))

    spec = b"".join([
        m._u16_attr(m._IFLA_BRIDGE_FLAGS, 0),
        entry(m._BRIDGE_VLAN_INFO_PVID | m._BRIDGE_VLAN_INFO_UNTAGGED, 101),
        entry(m._BRIDGE_VLAN_INFO_RANGE_BEGIN, 200),
        entry(m._BRIDGE_VLAN_INFO_RANGE_END | m._BRIDGE_VLAN_INFO_UNTAGGED, 202),
        entry(0, 300),
        m._attr(m._IFLA_BRIDGE_VLAN_INFO, b"\x00"),  # too short: skipped
    ])
    assert m._parse_bridge_vlans(spec) == [(101, True, True), (200, False, True), (201, False, True),
                                           (202, False, True), (300, False, False)]
    assert m._parse_bridge_vlans(spec)[0].pvid is True


# --- inside the full-kernel guest -------------------------------------------------------------


def vm_kernel_has_what_the_host_lacks():
    assert os.uname().release == fullkernel.kernel_release()
    assert Path("/proc/net/vlan/config").exists(), "8021q is not loaded"
    assert Path("/sys/module/bridge").is_dir()
    assert Path("/dev/net/tun").is_char_device()
    config = sh("ip", "-j", "-d", "link", "show").stdout  # the init script brought lo up
    assert json.loads(config)[0]["operstate"] == "UNKNOWN" and "UP" in json.loads(config)[0]["flags"]


def vm_create_vlan(vns):
    vns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    vns.ip("link", "add", "d0", "mtu", "9000", "type", "dummy")
    va, d0 = vns.index("va"), vns.index("d0")
    got = vns.probe([
        {"op": "create_vlan", "name": "va.101", "parent": va, "vid": 101},
        {"op": "create_vlan", "name": "uplink.4094", "parent": d0, "vid": 4094, "mtu": 1400},
        {"op": "create_vlan", "name": "d0.1", "parent": d0, "vid": 1},
        {"op": "get_link", "name": "va.101"},
        {"op": "get_link", "name": "uplink.4094"},
        {"op": "get_link", "name": "d0.1"},
        {"op": "create_vlan", "name": "va.101", "parent": va, "vid": 102},  # name taken
        {"op": "create_vlan", "name": "va.x", "parent": va, "vid": 101},  # VID taken on va
        {"op": "create_vlan", "name": "lo.5", "parent": 1, "vid": 5},  # lo cannot carry VLANs
        {"op": "create_vlan", "name": "no.5", "parent": 999999, "vid": 5},
        {"op": "create_vlan", "name": "d0.2", "parent": d0, "vid": 2, "mtu": 9001},  # above the parent's
    ])
    assert got[:3] == [None, None, None]
    v101, v4094, v1 = got[3:6]
    assert (v101["kind"], v101["vlan_id"], v101["link"], v101["mtu"]) == ("vlan", 101, va, 1500)
    assert (v4094["kind"], v4094["vlan_id"], v4094["link"], v4094["mtu"]) == ("vlan", 4094, d0, 1400)
    assert (v1["vlan_id"], v1["mtu"]) == (1, 9000)  # MTU from the parent
    for link in (v101, v4094, v1):
        assert not link["is_up"]  # left down, as create_bridge
        assert link["vlan_filtering"] is None and link["vlan_default_pvid"] is None

    assert got[6]["errno"] == errno.EEXIST
    assert got[7]["errno"] == errno.EEXIST and "already exists" in got[7]["extack"]
    # EOPNOTSUPP with other words: a plain OSError, not MissingKernelFeature.
    assert (got[8]["error"], got[8]["errno"]) == ("OSError", errno.EOPNOTSUPP)
    assert "VLANs not supported on device" in got[8]["extack"]
    assert got[9]["errno"] == errno.ENODEV
    assert got[10]["errno"] == errno.EINVAL

    pr = vns.pyroute2()["links"]
    for link in (v101, v4094, v1):
        ip = vns.link(link["name"])
        assert ip["linkinfo"]["info_kind"] == "vlan"
        assert ip["linkinfo"]["info_data"]["protocol"] == "802.1Q"
        assert ip["linkinfo"]["info_data"]["id"] == link["vlan_id"]
        assert vns.index(ip["link"]) == link["link"]
        assert (ip["ifindex"], ip["mtu"]) == (link["index"], link["mtu"])
        p = pr[link["name"]]
        assert (p["index"], p["kind"], p["link"], p["vlan_id"], p["mtu"]) == (
            link["index"], "vlan", link["link"], link["vlan_id"], link["mtu"])
    # IFLA_LINK is also a veth's peer, and absent (0) on a dummy.
    va_link, d0_link = vns.probe([{"op": "get_link", "name": "va"}, {"op": "get_link", "name": "d0"}])
    assert va_link["link"] == vns.index("vb") == pr["va"]["link"]
    assert d0_link["link"] == 0 == pr["d0"]["link"]
    assert d0_link["vlan_id"] is None
    assert sorted(link["ifname"] for link in vns.links()) == ["d0", "d0.1", "lo", "uplink.4094", "va", "va.101", "vb"]


def vm_create_bridge_vlan_filtering(vns):
    got = vns.probe([
        {"op": "create_bridge", "name": "brf", "vlan_filtering": True, "default_pvid": 0},
        {"op": "create_bridge", "name": "brp", "vlan_filtering": True},
        {"op": "create_bridge", "name": "brq", "vlan_filtering": True, "default_pvid": 7},
        {"op": "create_bridge", "name": "brd"},
        {"op": "create_bridge", "name": "bre", "default_pvid": 0},  # filtering off, no default PVID
        {"op": "get_link", "name": "brf"},
        {"op": "get_link", "name": "brp"},
        {"op": "get_link", "name": "brq"},
        {"op": "get_link", "name": "brd"},
        {"op": "get_link", "name": "bre"},
    ])
    assert got[:5] == [None] * 5
    # The bridge's own VLANs: the default PVID, if any.  Ports joining get the same.
    for i, br in enumerate(("brf", "brp", "brq")):
        vns.ip("link", "add", f"p{i}", "type", "veth", "peer", "name", f"q{i}")
        vns.ip("link", "set", f"p{i}", "master", br)
    expect = {"brf": (True, 0), "brp": (True, 1), "brq": (True, 7), "brd": (False, 1), "bre": (False, 0)}
    pr = vns.pyroute2()
    for link in got[5:]:
        name = link["name"]
        assert (link["vlan_filtering"], link["vlan_default_pvid"]) == expect[name], name
        assert link["vlan_id"] is None and link["link"] == 0
        data = vns.link(name)["linkinfo"]["info_data"]
        assert (bool(data["vlan_filtering"]), data["vlan_default_pvid"]) == expect[name], name
        p = pr["links"][name]
        assert (bool(p["vlan_filtering"]), p["vlan_default_pvid"]) == expect[name], name

    indexes = {n: vns.index(n) for n in ("brf", "brp", "brq", "p0", "p1", "p2", "q0")}
    mine = dict(zip(indexes, vns.probe([{"op": "bridge_vlans", "index": i} for i in indexes.values()])))
    assert mine == {"brf": [], "brp": [[1, True, True]], "brq": [[7, True, True]], "p0": [],
                    "p1": [[1, True, True]], "p2": [[7, True, True]], "q0": []}
    oracle = vns.vlans()
    for name, vlans in mine.items():
        assert oracle.get(name, []) == vlans == pr["vlans"].get(name, []), name


def vm_bridge_vlan_add_del(vns):
    vns.probe([{"op": "create_bridge", "name": "br0", "vlan_filtering": True, "default_pvid": 0}])
    vns.hold_taps("tap0", "tap1")
    vns.veth("up0", "peer0")
    for port in ("tap0", "tap1", "up0"):
        vns.ip("link", "set", port, "master", "br0")
    br0, tap0, tap1, up0, peer0 = (vns.index(n) for n in ("br0", "tap0", "tap1", "up0", "peer0"))

    got = vns.probe([
        {"op": "bridge_vlan_add", "index": tap0, "vid": 101, "pvid": True, "untagged": True},
        {"op": "bridge_vlan_add", "index": tap1, "vid": 102, "pvid": True, "untagged": True},
        {"op": "bridge_vlan_add", "index": tap1, "vid": 101},  # a trunk TAP: 101 tagged too
        {"op": "bridge_vlan_add", "index": up0, "vid": 101},
        {"op": "bridge_vlan_add", "index": up0, "vid": 102},
        {"op": "bridge_vlan_add", "index": br0, "vid": 101, "self_": True},
        {"op": "bridge_vlan_add", "index": up0, "vid": 101},  # again: harmless
    ])
    assert got == [None] * 7
    expect = {"tap0": [[101, True, True]], "tap1": [[101, False, False], [102, True, True]],
              "up0": [[101, False, False], [102, False, False]], "br0": [[101, False, False]]}
    assert vns.vlans() == expect
    names = ("tap0", "tap1", "up0", "br0", "peer0")
    mine = dict(zip(names, vns.probe([{"op": "bridge_vlans", "index": vns.index(n)} for n in names])))
    assert mine == {**expect, "peer0": []}
    assert vns.pyroute2()["vlans"] == expect

    # A new PVID takes the flag from the old one; adding again updates the flags.
    got = vns.probe([
        {"op": "bridge_vlan_add", "index": tap0, "vid": 105, "pvid": True, "untagged": True},
        {"op": "bridge_vlan_add", "index": up0, "vid": 102, "untagged": True},
        {"op": "bridge_vlans", "index": tap0},
        {"op": "bridge_vlans", "index": up0},
    ])
    assert got[2] == [[101, False, True], [105, True, True]] == vns.vlans()["tap0"]
    assert got[3] == [[101, False, False], [102, False, True]] == vns.vlans()["up0"]

    got = vns.probe([
        {"op": "bridge_vlan_del", "index": up0, "vid": 102},
        {"op": "bridge_vlan_del", "index": tap0, "vid": 101},
        {"op": "bridge_vlan_del", "index": tap0, "vid": 999},  # not there: fine
        {"op": "bridge_vlan_del", "index": br0, "vid": 101, "self_": True},
        {"op": "bridge_vlans", "index": up0},
        {"op": "bridge_vlans", "index": tap0},
        {"op": "bridge_vlans", "index": br0},
    ])
    assert got[:4] == [None] * 4
    assert got[4:] == [[[101, False, False]], [[105, True, True]], []]
    assert vns.vlans() == {"tap0": [[105, True, True]], "tap1": expect["tap1"], "up0": [[101, False, False]]}

    # What iproute2 writes, the codec reads; ranges come expanded.
    vns.run("bridge", "vlan", "add", "dev", "up0", "vid", "200-203", check=True)
    (got,) = vns.probe([{"op": "bridge_vlans", "index": up0}])
    assert got == [[101, False, False]] + [[v, False, False] for v in range(200, 204)] == vns.vlans()["up0"]

    # The kernel has the feature: these EOPNOTSUPPs are about the device, and plain OSErrors.
    got = vns.probe([
        {"op": "bridge_vlan_add", "index": peer0, "vid": 101},  # not a bridge port
        {"op": "bridge_vlan_add", "index": br0, "vid": 101},  # the bridge itself, without self_
        {"op": "bridge_vlan_add", "index": 999999, "vid": 101},
        {"op": "bridge_vlans", "index": 999999},
    ])
    for err in got[:2]:
        assert (err["error"], err["errno"]) == ("OSError", errno.EOPNOTSUPP), err
    assert got[2]["errno"] == errno.ENODEV
    assert got[3] == []


def vm_traffic_vlan_aware_bridge(make_netns):
    """One VLAN-aware bridge for two VLANs: each TAP has its VLAN as PVID untagged, the
    uplink carries both tagged.  Frames keep to their VLAN, tagged with its VID on the
    uplink, and untagged frames from the LAN reach no TAP (no VLAN 1)."""
    host = make_netns("qih-host", kind=VlanNetns)
    with wire(make_netns, host, "up0", (101, 102)) as net:
        idx = {n: host.index(n) for n in ("up0", "tap101", "tap102")}
        assert host.probe([{"op": "create_bridge", "name": "br0", "vlan_filtering": True, "default_pvid": 0}]) == [None]
        br0 = host.index("br0")
        ops = [{"op": "set_link", "index": i, "master": br0, "up": True} for i in idx.values()]
        ops += [{"op": "bridge_vlan_add", "index": idx[f"tap{v}"], "vid": v, "pvid": True, "untagged": True}
                for v in (101, 102)]
        ops += [{"op": "bridge_vlan_add", "index": idx["up0"], "vid": v} for v in (101, 102)]
        ops += [{"op": "set_link", "index": br0, "up": True}]
        assert host.probe(ops) == [None] * len(ops)
        assert host.vlans() == {"tap101": [[101, True, True]], "tap102": [[102, True, True]],
                                "up0": [[101, False, False], [102, False, False]]}
        host.wait_forwarding("up0", "tap101", "tap102")

        # Guest to LAN: tagged with the TAP's VLAN on the uplink, never at the other TAP.
        for vid, other in ((101, 102), (102, 101)):
            got, frame = net.from_guest(vid)
            assert [f.vid for f in got["lan"]] == [vid], got
            assert got["lan"][0].data == frame  # the frame itself, the tag taken out by the receiver
            assert got[other] == [], f"VLAN {vid} frame leaked to the VLAN {other} TAP"

        # LAN to guest: a tagged frame reaches its VLAN's TAP untagged, and only that one.
        for vid, other in ((101, 102), (102, 101)):
            got = net.from_lan(vid, sentinel=other)
            assert [f.vid for f in got[vid]] == [None], got  # untagged on the TAP
            assert got[other] == [], f"VLAN {vid} frame leaked to the VLAN {other} TAP"

        # Untagged (the kernel's default VLAN 1) and unconfigured VLANs reach no TAP.
        for vid in (None, 1, 103):
            got = net.from_lan(vid)
            assert (got[101], got[102]) == ([], []), (vid, got)


def vm_traffic_bridge_per_vlan(make_netns):
    """The classic layout: a plain bridge whose uplink port is the VLAN subinterface
    up1.101 made by create_vlan.  The TAP's frames leave the uplink tagged 101."""
    host = make_netns("qih-host", kind=VlanNetns)
    with wire(make_netns, host, "up1", (101,)) as net:
        up1 = host.index("up1")
        got = host.probe([
            {"op": "create_vlan", "name": "up1.101", "parent": up1, "vid": 101},
            {"op": "create_bridge", "name": "br101"},
            {"op": "get_link_index", "name": "up1.101"},
            {"op": "get_link_index", "name": "br101"},
        ])
        assert got[:2] == [None, None]
        vlan, br = got[2:]
        # A VLAN subinterface comes up only on a parent that is up.
        (early,) = host.probe([{"op": "set_link", "index": vlan, "up": True}])
        assert early["errno"] == errno.ENETDOWN
        ops = [{"op": "set_link", "index": up1, "up": True}, {"op": "set_link", "index": br, "up": True}]
        ops += [{"op": "set_link", "index": i, "master": br, "up": True} for i in (vlan, host.index("tap101"))]
        assert host.probe(ops) == [None] * len(ops)
        host.wait_forwarding("up1.101", "tap101")

        got, frame = net.from_guest(101)
        assert [f.vid for f in got["lan"]] == [101], got
        assert got["lan"][0].data == frame
        got = net.from_lan(101)
        assert [f.vid for f in got[101]] == [None], got
        for vid in (102, None):  # other VLANs and untagged frames stay on up1
            assert net.from_lan(vid)[101] == [], vid


@pytest.mark.parametrize("check", fullkernel.checks(globals()))
def test_in_vm(full_kernel, check):
    full_kernel.report(__file__, check)
