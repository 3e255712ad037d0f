"""`qemu-ifhooks plan`: the hook's plan as `ip` commands, changing nothing. Checked
against the kernel (iproute2 snapshots before and after) and against what the hook then
really does (the commands it logs)."""

from __future__ import annotations

import pytest

from conftest import CLI, SEED_CONFIG, assert_one_line_error, planned_commands

from qemu_ifhooks.configmodel import Segment
from qemu_ifhooks.netlink import IFF_UP, Link
from qemu_ifhooks.buildops import CreateBridge
from qemu_ifhooks.ops import SetMaster, SetMtu, SetUp
from qemu_ifhooks.buildplan import PREDICTED_INDEX, predicted_bridge
from qemu_ifhooks.plan import plan_attach, plan_bridge


def plan(ns, hooks, *args):
    return hooks.cli(ns, "plan", *args)


def test_plan_ifup_on_a_fresh_host_is_what_the_hook_then_does(seed, hooks):
    seed.hold_taps("tap0")
    before = seed.snapshot()
    done = plan(seed, hooks, "ifup", "tap0", "--vlan", "0")
    assert (done.returncode, done.stderr) == (0, "")
    assert seed.snapshot() == before  # nothing changed
    planned = planned_commands(done.stdout)
    eth0 = seed.link("eth0")["address"]
    assert planned == [
        f"ip link add br0 address {eth0} type bridge stp_state 0 forward_delay 0",
        "ip link set dev eth0 master br0",
        "ip link set dev br0 up",
        "ip link set dev tap0 master br0",
        "ip link set dev tap0 up",
    ]
    assert done.stdout.splitlines()[0] == "# ifup tap0: vlan.0, bridge br0"
    assert "# br0 does not exist yet: the hook creates it" in done.stdout
    assert hooks.run(seed, "ifup-br0", "tap0").returncode == 0
    assert hooks.logged_commands("ifup", "tap0") == planned
    assert seed.ports("br0") == ["eth0", "tap0"]

    again = plan(seed, hooks, "ifup", "tap0", "--bridge", "br0")
    assert planned_commands(again.stdout) == [] and "# nothing to do" in again.stdout

    down = plan(seed, hooks, "ifdown", "tap0", "--hook", "ifdown-br0")
    assert down.returncode == 0, down.stderr
    assert planned_commands(down.stdout) == ["ip link set dev tap0 nomaster", "ip link set dev tap0 down"]
    assert seed.ports("br0") == ["eth0", "tap0"]


def test_plan_for_a_tap_qemu_has_not_created_yet(seed, hooks):
    seed.ip("link", "set", "eth1", "mtu", "9000")
    hooks.write_config(SEED_CONFIG + 'match = ["web-*"]\n')
    done = plan(seed, hooks, "ifup", "web-1", "--hook", "qemu-ifup")
    assert done.returncode == 0, done.stderr
    assert "# web-1 does not exist yet: planned as QEMU creates it" in done.stdout
    # The bridge follows its 9000-byte uplink, so the TAP gets 9000 before joining.
    assert planned_commands(done.stdout)[-3:] == ["ip link set dev web-1 mtu 9000",
                                          "ip link set dev web-1 master br1",
                                          "ip link set dev web-1 up"]
    assert seed.link("br1") is None and seed.link("web-1") is None


def test_plan_ifdown_of_a_tap_that_is_gone(seed, hooks):
    done = plan(seed, hooks, "ifdown", "tap9", "--vlan", "1")
    assert done.returncode == 0
    assert "# already gone (QEMU closed it)" in done.stdout
    assert planned_commands(done.stdout) == []


def test_plan_refuses_what_the_hook_refuses(seed, hooks):
    assert_one_line_error(plan(seed, hooks, "ifup", "lan0", "--vlan", "0"), 65, "not a TAP")
    seed.run("ethtool", "-K", "eth0", "gro", "off", check=True)
    seed.hold_taps("tap0")
    assert_one_line_error(plan(seed, hooks, "ifup", "tap0", "--vlan", "0"), 69,
                          "GRO disabled", "ethtool -K eth0 gro on")
    hooks.write_config(SEED_CONFIG.replace('uplink = "eth0"', 'uplink = "eth0"\n'
                                           'offload_check = "warn"'))
    done = plan(seed, hooks, "ifup", "tap0", "--vlan", "0")
    assert done.returncode == 0
    assert "# warning: uplink eth0 has GRO disabled" in done.stdout
    assert seed.link("br0") is None


@pytest.mark.parametrize("args, status, fragment", [
    (["ifup", "tap0", "--hook", "ifdown-br0"], 64, "does ifdown, not ifup"),
    (["ifup", "tap0", "--hook", "ifup-br7"], 64, "no segment uses bridge br7"),
    (["ifup", "bad/name", "--vlan", "0"], 64, "invalid interface name"),
    (["ifup", "tap0"], 64, "one of the arguments --vlan --bridge --hook is required"),
    (["ifup", "tap0", "--vlan", "5"], 64, "no segment vlan.5"),
])
def test_plan_usage_errors(tmp_path, args, status, fragment):
    config = tmp_path / "c.toml"
    config.write_text(SEED_CONFIG)
    import subprocess

    done = subprocess.run([str(CLI), "plan", *args, "--config", str(config)],
                          capture_output=True, text=True)
    assert_one_line_error(done, status, fragment)


# --- predicted_bridge, on plain values ------------------------------------------------------

def test_predicted_bridge_is_what_plan_bridge_creates():
    segment = Segment(vlan=0, bridge="br0", uplink="eth0", mtu=9000)
    uplink = Link(3, "eth0", "veth", None, IFF_UP, 1500, 0, b"\x02\0\0\0\0\x05", 6)
    build = plan_bridge(segment, None, uplink)
    bridge = predicted_bridge(build, uplink)
    create = build.ops[0]
    assert isinstance(create, CreateBridge)
    assert (bridge.name, bridge.kind, bridge.address, bridge.mtu, bridge.is_up) == \
        ("br0", "bridge", create.address, 9000, True)
    assert bridge.index == PREDICTED_INDEX
    tap = Link(4, "tap0", "tun", "tap", 0, 1500, 0, None, 2)
    assert plan_attach(segment, tap, bridge).ops == (
        SetMtu("tap0", 9000), SetMaster("tap0", "br0"), SetUp("tap0"))


def test_predicted_bridge_follows_the_uplink_or_defaults_to_1500():
    segment = Segment(vlan=1, bridge="br1")
    assert predicted_bridge(plan_bridge(segment, None, None, machine_id=b"m"), None).mtu == 1500
    segment = Segment(vlan=1, bridge="br1", uplink="eth1")
    uplink = Link(3, "eth1", "veth", None, IFF_UP, 9000, 0, b"\x02\0\0\0\0\x05", 6)
    assert predicted_bridge(plan_bridge(segment, None, uplink), uplink).mtu == 9000
