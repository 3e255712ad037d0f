"""`qemu-ifhooks up/down/hook/demo` against real namespaces, checked with iproute2."""

from __future__ import annotations

from conftest import CLI, GUEST_DIR, SEED_CONFIG, assert_one_line_error, require_guest, sh


def cli(ns, hooks, *args):
    return ns.run(str(CLI), *args, env=hooks.env())


def test_up_builds_the_declared_bridges_and_down_removes_them(netns, hooks):
    netns.veth("eth0", "lan0")
    netns.veth("eth1", "lan1")
    hooks.write_config(SEED_CONFIG.replace('uplink = "eth1"', 'uplink = "eth1"\ncreate = false'))
    done = cli(netns, hooks, "up")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["vlan.0: br0: set up with uplink eth0",
                                        "vlan.1: br1: set up with uplink eth1"]
    for bridge, uplink in (("br0", "eth0"), ("br1", "eth1")):
        link = netns.link(bridge)
        assert link["linkinfo"]["info_kind"] == "bridge" and "UP" in link["flags"]
        assert link["address"] == netns.link(uplink)["address"]
        assert netns.ports(bridge) == [uplink]
    again = cli(netns, hooks, "up", "-v")
    assert again.stdout.splitlines() == ["vlan.0: br0: already up with uplink eth0",
                                         "vlan.1: br1: already up with uplink eth1"]

    done = cli(netns, hooks, "down", "1")
    assert (done.returncode, done.stdout) == (0, "vlan.1: br1: removed\n")
    assert netns.link("br1") is None and netns.link("br0") is not None
    eth1 = netns.link("eth1")
    assert eth1 is not None and eth1.get("master") is None  # the uplink itself stays
    assert cli(netns, hooks, "down").stdout.splitlines() == ["vlan.0: br0: removed",
                                                             "vlan.1: br1: absent"]


def test_down_refuses_a_bridge_with_foreign_ports_unless_forced(netns, hooks):
    netns.veth("eth0", "lan0")
    hooks.write_config(SEED_CONFIG)
    netns.hold_taps("tap0")
    assert hooks.run(netns, "ifup-br0", "tap0").returncode == 0
    done = cli(netns, hooks, "down", "0")
    assert_one_line_error(done, 69, "down: vlan.0: br0:", "still has ports tap0", "--force")
    assert netns.ports("br0") == ["eth0", "tap0"]
    done = cli(netns, hooks, "down", "0", "--force")
    assert done.returncode == 0, done.stderr
    assert netns.link("br0") is None


def test_up_failure_is_one_line_per_bridge_and_others_still_built(netns, hooks):
    netns.veth("eth1", "lan1")
    hooks.write_config(SEED_CONFIG)  # eth0 is missing
    done = cli(netns, hooks, "up")
    assert done.returncode == 69
    assert done.stderr.strip().splitlines() == [
        "qemu-ifhooks: up: vlan.0: br0: uplink eth0 does not exist"]
    assert netns.ports("br1") == ["eth1"]
    assert netns.link("br0") is None


def test_unknown_vlan_is_a_usage_error(netns, hooks):
    hooks.write_config(SEED_CONFIG)
    assert_one_line_error(cli(netns, hooks, "up", "7"), 64, "no segment vlan.7")


def test_explicit_hook_form(netns, hooks):
    netns.veth("eth1", "lan1")
    hooks.write_config(SEED_CONFIG)
    netns.hold_taps("tapx")
    done = cli(netns, hooks, "hook", "ifup", "--vlan", "1", "tapx")
    assert (done.returncode, done.stderr) == (0, "")
    assert netns.master_of("tapx") == "br1"
    done = cli(netns, hooks, "hook", "ifdown", "--bridge", "br1", "tapx")
    assert (done.returncode, done.stderr) == (0, "")
    assert netns.master_of("tapx") is None
    assert_one_line_error(cli(netns, hooks, "hook", "ifup", "--vlan", "1", "lan1"), 65,
                          "hook ifup: lan1:", "not a TAP")


def test_demo_runs_end_to_end():
    """The README's main command: everything it shows must hold, and it leaves no
    namespace behind."""
    require_guest()
    def demo_namespaces():
        return [line for line in sh("ip", "netns", "list").stdout.splitlines()
                if line.startswith("qih-demo-")]
    before = demo_namespaces()
    done = sh(CLI, "demo", "--guest-dir", GUEST_DIR, check=False)  # as `make demo` does
    assert done.returncode == 0, done.stdout + done.stderr
    assert "guest eth0 ping 192.0.2.1: OK" in done.stdout
    assert "guest eth1 ping 198.51.100.1: OK" in done.stdout
    assert "vlan 0: tap0 -> br0" in done.stdout and "vlan 1: tap1 -> br1" in done.stdout
    assert demo_namespaces() == before
