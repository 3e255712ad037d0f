"""The hooks with 802.1Q: a bridge per VLAN on <uplink>.<tag>, and VLAN-aware bridges.

On this host, whose kernel lacks 8021q and bridge VLAN filtering, the hooks must say so
in one line with status 69 and change nothing, and `plan` shows what they would do.
Inside the full-kernel guest (tests/fullkernel.py, one boot for every vm_* check of the
run) the real hook entries run as QEMU runs them, on TAPs this process holds, and
traffic proves the result: frames a guest writes into its TAP leave the uplink tagged with its VLAN, and
frames from the LAN reach the TAPs of their VLAN only. iproute2 is the oracle for the
links and VLANs.
"""

from __future__ import annotations

import pytest

import frames
import fullkernel
from conftest import assert_one_line_error, planned_commands
from vlantraffic import VlanNetns, wire

EX_UNAVAILABLE, EX_CONFIG = 69, 78
LACKS_8021Q = ("this kernel lacks 802.1Q VLAN support (CONFIG_VLAN_8021Q); "
               "load it with 'modprobe 8021q'")
LACKS_FILTERING = "this kernel lacks bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)"

# A bridge per VLAN, both on the trunk port eth0; eth0 itself is br0's port for
# untagged traffic.
CLASSIC = """\
[vlan.0]
bridge = "br0"
uplink = "eth0"

[vlan.1]
bridge = "br101"
uplink = "eth0"
tag = 101

[vlan.2]
bridge = "br102"
uplink = "eth0"
tag = 102
"""

# One VLAN-aware bridge; vlan.3's guest tags VLANs 101 and 102 itself, its untagged
# frames are VLAN 100.
VLAN_AWARE = """\
[vlan.1]
bridge = "br0"
uplink = "eth0"
tag = 101

[vlan.2]
bridge = "br0"
uplink = "eth0"
tag = 102

[vlan.3]
bridge = "br0"
uplink = "eth0"
tag = 100
trunk = [101, 102]
"""


@pytest.fixture
def host(make_netns) -> VlanNetns:
    return make_netns("qih-host", kind=VlanNetns)


# --- on this host: the kernel lacks both ------------------------------------------------------

def require_lacking(ns: VlanNetns, *ip_args: str) -> None:
    done = ns.ip(*ip_args, check=False)
    if done.returncode == 0:
        pytest.skip("this kernel has the feature; the full-kernel checks cover it")


def test_bridge_per_vlan_on_a_kernel_without_8021q(host, hooks):
    host.veth("eth0", "lan0")
    require_lacking(host, "link", "add", "link", "eth0", "name", "eth0.9", "type", "vlan", "id", "9")
    host.hold_taps("tap101")
    hooks.write_config(CLASSIC)
    before = host.snapshot()
    done = hooks.run(host, "ifup-br101", "tap101")
    assert_one_line_error(done, EX_UNAVAILABLE)
    assert done.stderr == f"qemu-ifhooks: ifup-br101: tap101: {LACKS_8021Q}\n"
    up = hooks.cli(host, "up", "2")
    assert_one_line_error(up, EX_UNAVAILABLE)
    assert up.stderr == f"qemu-ifhooks: up: vlan.2: br102: {LACKS_8021Q}\n"
    assert host.snapshot() == before


def test_vlan_aware_bridge_on_a_kernel_without_vlan_filtering(host, hooks):
    host.veth("eth0", "lan0")
    require_lacking(host, "link", "add", "brx", "type", "bridge", "vlan_filtering", "1")
    host.hold_taps("tap101")
    hooks.write_config(VLAN_AWARE)
    before = host.snapshot()
    done = hooks.run(host, "ifup-vlan1", "tap101")
    assert_one_line_error(done, EX_UNAVAILABLE, f"ifup-vlan1: tap101: {LACKS_FILTERING}",
                          "give each tagged segment a bridge of its own")
    assert host.snapshot() == before

    # An existing bridge tells by itself: such a kernel reports no default PVID.
    host.bridge("br0")
    before = host.snapshot()
    done = hooks.run(host, "ifup-vlan2", "tap101")
    assert_one_line_error(done, EX_UNAVAILABLE, f"ifup-vlan2: tap101: {LACKS_FILTERING}")
    assert host.snapshot() == before


def test_check_says_which_kernel_support_is_missing(host, hooks):
    import json

    host.veth("eth0", "lan0")
    require_lacking(host, "link", "add", "link", "eth0", "name", "eth0.9", "type", "vlan", "id", "9")
    require_lacking(host, "link", "add", "brx", "type", "bridge", "vlan_filtering", "1")
    for config, tagged, option in ((CLASSIC, ("vlan.1.tag", "vlan.2.tag"), "CONFIG_VLAN_8021Q"),
                                   (VLAN_AWARE, ("vlan.1.tag", "vlan.2.tag", "vlan.3.tag"),
                                    "CONFIG_BRIDGE_VLAN_FILTERING")):
        hooks.write_config(config)
        done = hooks.cli(host, "check", "--json")
        assert done.returncode == 1, done.stderr
        kernel = [f for f in json.loads(done.stdout)["findings"] if f["check"] == "kernel"]
        assert [(f["severity"], f["subject"]) for f in kernel] == [("fail", t) for t in tagged]
        assert all(option in f["message"] for f in kernel), kernel


def test_plan_shows_the_subinterface_the_hook_would_make(host, hooks):
    host.veth("eth0", "lan0")
    hooks.write_config(CLASSIC)
    before = host.snapshot()
    done = hooks.cli(host, "plan", "ifup", "tap101", "--hook", "ifup-br101")
    assert (done.returncode, done.stderr) == (0, "")
    assert host.snapshot() == before
    eth0 = host.link("eth0")["address"]
    assert planned_commands(done.stdout) == [
        "ip link add link eth0 name eth0.101 type vlan id 101",
        "ip link set dev eth0.101 alias 'qemu-ifhooks: vlan.1'",
        f"ip link add br101 address {eth0} type bridge stp_state 0 forward_delay 0",
        "ip link set dev eth0.101 master br101",
        "ip link set dev eth0.101 up",
        "ip link set dev br101 up",
        "ip link set dev tap101 master br101",
        "ip link set dev tap101 up",
    ]


def test_plan_shows_the_vlan_aware_bridge_and_the_tap_vlans(host, hooks):
    host.veth("eth0", "lan0")
    host.ip("link", "set", "eth0", "down")
    hooks.write_config(VLAN_AWARE)
    done = hooks.cli(host, "plan", "ifup", "tap100", "--vlan", "3")
    assert (done.returncode, done.stderr) == (0, "")
    eth0 = host.link("eth0")["address"]
    assert planned_commands(done.stdout) == [
        f"ip link add br0 address {eth0} type bridge stp_state 0 forward_delay 0 "
        f"vlan_filtering 1 vlan_default_pvid 0",
        "ip link set dev eth0 master br0",
        "bridge vlan add dev eth0 vid 100",
        "bridge vlan add dev eth0 vid 101",
        "bridge vlan add dev eth0 vid 102",
        "ip link set dev eth0 up",
        "ip link set dev br0 up",
        "ip link set dev tap100 master br0",
        "bridge vlan add dev tap100 vid 100 pvid untagged",
        "bridge vlan add dev tap100 vid 101",
        "bridge vlan add dev tap100 vid 102",
        "ip link set dev tap100 up",
    ]


# --- inside the full-kernel guest ----------------------------------------------------------------

def ok(done) -> None:
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


def vlans_and_links(ns: VlanNetns) -> tuple:
    """What an idempotent hook must leave as it is."""
    return ns.snapshot(), ns.vlans()


def vm_bridge_per_vlan(make_netns, host, hooks):
    """Two classic segments on the trunk eth0, which is also the port of an untagged
    bridge: the hook makes eth0.101 (marked as its own), uses the admin's eth0.102 as it
    is; each TAP's frames leave eth0 tagged with its VLAN, tagged frames from the LAN
    reach their VLAN's TAP only (not br0's), and `down` deletes eth0.101 only."""
    with wire(make_netns, host, "eth0", (0, 101, 102), gro=True) as net:
        host.ip("link", "add", "link", "eth0", "name", "eth0.102", "type", "vlan", "id", "102")
        hooks.write_config(CLASSIC)
        planned = planned_commands(hooks.cli(host, "plan", "ifup", "tap101", "--vlan", "1").stdout)
        ok(hooks.run(host, "ifup-br101", "tap101"))
        ok(hooks.run(host, "ifup-br102", "tap102"))
        ok(hooks.run(host, "ifup-br0", "tap0"))
        assert hooks.logged_commands("ifup", "tap101") == planned  # the dry run told the truth

        ours, admins = host.link("eth0.101"), host.link("eth0.102")
        assert ours["linkinfo"]["info_data"]["id"] == 101 and ours["link"] == "eth0"
        assert ours["ifalias"] == "qemu-ifhooks: vlan.1"
        assert ours["mtu"] == host.link("eth0")["mtu"] and "UP" in ours["flags"]
        assert "ifalias" not in admins
        assert host.ports("br101") == ["eth0.101", "tap101"]
        assert host.ports("br102") == ["eth0.102", "tap102"]
        assert host.ports("br0") == ["eth0", "tap0"]
        host.wait_forwarding("eth0.101", "tap101", "eth0.102", "tap102", "eth0", "tap0")

        for vid, other in ((101, 102), (102, 101)):
            got, frame = net.from_guest(vid)
            assert [f.vid for f in got["lan"]] == [vid], got
            assert got["lan"][0].data == frame
            assert (got[other], got[0]) == ([], []), f"VLAN {vid} frame leaked"
            got = net.from_lan(vid, sentinel=other)
            assert [f.vid for f in got[vid]] == [None], got  # untagged on the TAP
            assert (got[other], got[0]) == ([], [])
        got, _ = net.from_guest(0)
        assert ([f.vid for f in got["lan"]], got[101], got[102]) == ([None], [], []), got
        got = net.from_lan(None)
        assert ([f.vid for f in got[0]], got[101], got[102]) == ([None], [], []), got
        for vid in (1, 103):  # other VLANs reach no classic bridge; br0 passes them on as
            got = net.from_lan(vid)  # they are, tagged (br0 knows nothing of VLANs)
            assert ([f.vid for f in got[0]], got[101], got[102]) == ([vid], [], []), (vid, got)

        before = vlans_and_links(host)
        ok(hooks.run(host, "ifup-br101", "tap101"))
        assert vlans_and_links(host) == before

        for entry, tap in (("ifdown-br0", "tap0"), ("ifdown-br101", "tap101"),
                           ("ifdown-br102", "tap102")):
            ok(hooks.run(host, entry, tap))
        down = hooks.cli(host, "down")
        ok(down)
        assert down.stdout.splitlines() == [
            "vlan.0: br0: removed",
            "vlan.1: br101: removed",
            "vlan.2: br102: removed; eth0.102 left in place: qemu-ifhooks did not create it"]
        assert host.link("eth0.101") is None and host.link("br101") is None
        assert host.link("eth0.102") is not None and host.link("br102") is None
        assert "UP" in host.link("eth0")["flags"]


def vm_vlan_aware_bridge(make_netns, host, hooks):
    """One VLAN-aware bridge: each access TAP is in its VLAN only, untagged; the trunk
    TAP gets 101 and 102 tagged; the uplink carries them all tagged; untagged frames
    from the LAN reach no guest (no VLAN 1)."""
    with wire(make_netns, host, "eth0", (101, 102, 100), gro=True) as net:
        hooks.write_config(VLAN_AWARE)
        planned = planned_commands(hooks.cli(host, "plan", "ifup", "tap100", "--vlan", "3").stdout)
        ok(hooks.run(host, "ifup-vlan3", "tap100"))
        assert hooks.logged_commands("ifup", "tap100") == planned
        ok(hooks.run(host, "ifup-vlan1", "tap101"))
        ok(hooks.run(host, "ifup-vlan2", "tap102"))

        info = host.link("br0")["linkinfo"]["info_data"]
        assert (info["vlan_filtering"], info["vlan_default_pvid"]) == (1, 0)
        tagged = [[vid, False, False] for vid in (100, 101, 102)]
        expect = {"eth0": tagged, "tap100": [[100, True, True]] + tagged[1:],
                  "tap101": [[101, True, True]], "tap102": [[102, True, True]]}
        assert host.vlans() == expect
        host.wait_forwarding("eth0", "tap100", "tap101", "tap102")

        for vid, other in ((101, 102), (102, 101)):
            got, frame = net.from_guest(vid)
            assert [f.vid for f in got["lan"]] == [vid], got
            assert got["lan"][0].data == frame
            assert got[other] == [], f"VLAN {vid} frame leaked to the VLAN {other} TAP"
            assert [f.vid for f in got[100]] == [vid]  # the trunk guest sees it, tagged
            got = net.from_lan(vid, sentinel=other)
            assert [f.vid for f in got[vid]] == [None], got
            assert got[other] == []
            assert [f.vid for f in got[100]] == [vid]
        for vid in (None, 1, 103):
            got = net.from_lan(vid)
            assert (got[100], got[101], got[102]) == ([], [], []), (vid, got)
        # The trunk guest: its untagged frames are VLAN 100, its tagged ones keep the tag.
        got, _ = net.from_guest(100)
        assert ([f.vid for f in got["lan"]], got[101], got[102]) == ([100], [], []), got
        got, _ = net.from_guest(100, tag=102)
        assert [f.vid for f in got["lan"]] == [102] and [f.vid for f in got[102]] == [None], got
        assert got[101] == []

        before = vlans_and_links(host)
        ok(hooks.run(host, "ifup-vlan1", "tap101"))
        assert vlans_and_links(host) == before

        # On an existing bridge the hook stays on the standard library, and puts back
        # an uplink VLAN that went missing.
        ok(hooks.run(host, "ifdown-vlan2", "tap102"))
        assert "tap102" not in host.vlans()
        host.run("bridge", "vlan", "del", "dev", "eth0", "vid", "102", check=True)
        done = hooks.run(host, "ifup-vlan2", "tap102", PYTHONPROFILEIMPORTTIME="1")
        assert done.returncode == 0
        imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines()
                    if line.startswith("import time:")]
        assert "qemu_ifhooks.netlink" in imported
        assert not [m for m in imported if m.split(".")[0] == "pyroute2"], imported
        assert host.vlans() == expect


def vm_check_reports_bridge_vlans(make_netns, host, hooks):
    """`check` on a VLAN-aware bridge and a bridge per VLAN that the hooks built, then
    with an uplink VLAN missing and a default PVID."""
    with wire(make_netns, host, "eth0", (101,), gro=True):
        host.veth("eth1", "lan1")
        hooks.write_config(VLAN_AWARE + '\n[vlan.7]\nbridge = "br7"\nuplink = "eth1"\ntag = 7\n')
        ok(hooks.run(host, "ifup-vlan1", "tap101"))
        ok(hooks.cli(host, "up", "7"))

        def findings():
            import json

            done = hooks.cli(host, "check", "--json")
            assert "Traceback" not in done.stderr, done.stderr
            return {(f["check"], f["subject"]): f for f in json.loads(done.stdout)["findings"]}
        found = findings()
        assert found[("bridge.vlan", "br0")]["severity"] == "ok"
        assert found[("bridge.vlan", "eth0")]["message"] == "carries VLANs 100, 101, 102 of br0"
        assert found[("uplink", "eth1.7")]["message"] == "port of br7, up"
        assert found[("offload", "eth1")]["message"].startswith("lower device of eth1.7: ")
        for key in ("vlan.1.tag", "vlan.7.tag"):
            assert found[("kernel", key)]["severity"] == "ok"

        host.run("bridge", "vlan", "del", "dev", "eth0", "vid", "101", check=True)
        host.ip("link", "set", "br0", "type", "bridge", "vlan_default_pvid", "1")
        found = findings()
        assert (found[("bridge.vlan", "eth0")]["severity"],
                found[("bridge.vlan", "eth0")]["fix"]) == ("warn", "bridge vlan add dev eth0 vid 101")
        assert found[("bridge.vlan", "br0")]["severity"] == "warn"


def vm_vlan_aware_refuses_a_bridge_without_filtering(make_netns, host, hooks):
    host.veth("eth0", "lan0")
    host.bridge("br0")
    host.hold_taps("tap101")
    hooks.write_config(VLAN_AWARE)
    before = host.snapshot()
    done = hooks.run(host, "ifup-vlan1", "tap101")
    assert_one_line_error(done, EX_UNAVAILABLE, "bridge br0 exists with VLAN filtering off",
                          "vlan_filtering 1 vlan_default_pvid 0")
    assert host.snapshot() == before


def vm_a_vlan_cannot_be_both_on_a_vlan_aware_bridge_and_a_subinterface(make_netns, host, hooks):
    """The config rule, and why: once eth0.101 exists, the frames tagged 101 from the
    LAN go to it and no longer reach the VLAN-aware bridge's TAP."""
    with wire(make_netns, host, "eth0", (101, 102), gro=True) as net:
        hooks.write_config(VLAN_AWARE + '\n[vlan.9]\nbridge = "br9"\nuplink = "eth0"\ntag = 101\n')
        before = host.snapshot()
        assert_one_line_error(hooks.run(host, "ifup-vlan1", "tap101"), EX_CONFIG,
                              "vlan.9.tag: VLAN 101 on eth0 is wanted twice",
                              "would never reach the TAPs on br0")
        assert host.snapshot() == before

        # Built by hand with iproute2, the project's code out of it.
        host.ip("link", "add", "br0", "type", "bridge", "vlan_filtering", "1", "vlan_default_pvid", "0")
        for port, vid in (("eth0", None), ("tap101", 101), ("tap102", 102)):
            host.ip("link", "set", port, "master", "br0", "up")
        for argv in (("eth0", "101"), ("eth0", "102"), ("tap101", "101", "pvid", "untagged"),
                     ("tap102", "102", "pvid", "untagged")):
            host.run("bridge", "vlan", "add", "dev", argv[0], "vid", *argv[1:], check=True)
        host.ip("link", "set", "br0", "up")
        host.wait_forwarding("eth0", "tap101", "tap102")
        assert [f.vid for f in net.from_lan(101, sentinel=102)[101]] == [None]  # control

        host.ip("link", "add", "link", "eth0", "name", "eth0.101", "type", "vlan", "id", "101")
        host.ip("link", "set", "eth0.101", "up")
        with frames.netns_entered(host.name):
            stolen = frames.Capture("eth0.101")
        with stolen:
            assert net.from_lan(101, sentinel=102)[101] == []
            assert [f for f in stolen.frames() if f.ethertype == frames.ETH_P_EXPERIMENTAL]


@pytest.mark.parametrize("check", fullkernel.checks(globals()))
def test_in_vm(full_kernel, check):
    full_kernel.report(__file__, check)
