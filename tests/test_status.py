"""`qemu-ifhooks status`: which VM is on which bridge. Real QEMU processes (-S) hold the
TAPs; the oracles are their PIDs, their -name arguments and `bridge -j link`."""

from __future__ import annotations

import json
import shlex

import pytest

from conftest import CLI, SEED_CONFIG, require_qemu, sh
from qemutools import info_network_and_quit, start, wait_for

from qemu_ifhooks.status import parse_iff, vm_name


def status(ns, hooks, *extra):
    done = ns.run(str(CLI), "status", *extra, env=hooks.env())
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return done.stdout


def bridge_ports(ns):
    out = sh("bridge", "-n", ns.name, "-j", "link").stdout
    return {p["ifname"]: p.get("master") for p in json.loads(out or "[]")}


@pytest.fixture
def lab(netns, hooks):
    require_qemu()
    netns.veth("eth0", "lan0")
    netns.veth("eth1", "lan1")
    hooks.write_config(SEED_CONFIG)
    sh(CLI, "install", "--dir", hooks.dir, env=hooks.env())
    return netns


def qemu_args(hooks, vm, *vlans):
    done = sh(CLI, "qemu-args", *vlans, "--vm", vm, "--hook-dir", hooks.dir, env=hooks.env())
    return shlex.split(done.stdout)


def test_status_names_the_qemu_process_holding_each_tap(lab, hooks, make_netns, request):
    web1 = start(lab, ["-name", "guest=web1,debug-threads=on", *qemu_args(hooks, "web1", 0, 1)],
                 request, env=hooks.env())
    db2 = start(lab, ["-name", "db2", *qemu_args(hooks, "db2", 0)], request, env=hooks.env())
    # A TAP of the same name in another namespace belongs to someone else.
    other = make_netns("qih-other")
    stranger = other.hold_taps("web1-0")
    wanted = {"web1-0": "br0", "web1-1": "br1", "db2-0": "br0"}
    assert wait_for(lambda: all(bridge_ports(lab).get(t) == b for t, b in wanted.items())), \
        bridge_ports(lab)

    report = json.loads(status(lab, hooks, "--json"))
    assert report["version"] == 1
    by_bridge = {s["bridge"]["name"]: s for s in report["segments"]}
    assert sorted(by_bridge) == ["br0", "br1"]
    held = {}
    for segment in report["segments"]:
        assert segment["bridge"]["present"] and segment["bridge"]["state"] == "up"
        assert segment["bridge"]["mac_fixed"] is True
        assert segment["uplink"]["master"] == segment["bridge"]["name"]
        for port in segment["ports"]:
            assert bridge_ports(lab)[port["name"]] == segment["bridge"]["name"]
            held[port["name"]] = (port["role"], [(p["pid"], p["vm"])
                                                 for p in port["processes"]])
    assert held == {
        "eth0": ("uplink", []), "eth1": ("uplink", []),
        "web1-0": ("tap", [(web1.pid, "web1")]), "web1-1": ("tap", [(web1.pid, "web1")]),
        "db2-0": ("tap", [(db2.pid, "db2")]),
    }
    assert stranger.pid not in [pid for _, procs in held.values() for pid, _ in procs]

    text = status(lab, hooks)
    state = lab.link("web1-0")["operstate"].lower()  # a TAP's is "unknown" (no carrier logic)
    assert f"  port web1-0 (tap): {state}, mtu 1500, qemu-system-x86 pid {web1.pid} vm web1" \
        in text.splitlines()
    assert f"  port db2-0 (tap): {state}, mtu 1500, qemu-system-x86 pid {db2.pid} vm db2" \
        in text.splitlines()
    assert "  uplink eth1: up, port of br1" in text.splitlines()

    for qemu in (web1, db2):
        assert info_network_and_quit(qemu)["returncode"] == 0
    report = json.loads(status(lab, hooks, "--json"))
    assert [p["name"] for s in report["segments"] for p in s["ports"]] == ["eth0", "eth1"]


def test_status_of_a_tap_without_qemu_and_an_absent_bridge(netns, hooks):
    netns.veth("eth0", "lan0")
    hooks.write_config(SEED_CONFIG)
    holder = netns.hold_taps("tap0")
    assert hooks.run(netns, "ifup-br0", "tap0").returncode == 0
    report = json.loads(status(netns, hooks, "--json"))
    br0, br1 = report["segments"]
    tap = [p for p in br0["ports"] if p["name"] == "tap0"][0]
    assert [(p["pid"], p["vm"]) for p in tap["processes"]] == [(holder.pid, None)]
    assert br1["bridge"]["present"] is False and br1["uplink"]["present"] is False
    text = status(netns, hooks).splitlines()
    assert "vlan.1: br1: absent" in text and "  uplink eth1: absent" in text


@pytest.mark.parametrize("cmdline, name", [
    (["qemu-system-x86_64", "-name", "web1"], "web1"),
    (["qemu", "-name", "guest=web1,debug-threads=on"], "web1"),
    (["qemu", "-name", "web1,process=qemu:web1"], "web1"),
    (["qemu", "--name", "a,,b"], "a,b"),
    (["qemu", "-name", "first", "-name", "guest=second"], "second"),
    (["qemu", "-name", "only", "-name", "process=p"], "only"),
    (["qemu", "-m", "512"], None),
    (["qemu", "-name"], None),
])
def test_vm_name_from_cmdline(cmdline, name):
    assert vm_name(cmdline) == name


def test_parse_iff():
    assert parse_iff("pos:\t0\nflags:\t02100002\nmnt_id:\t60\nino:\t105\niff:\ttap0\n") == "tap0"
    assert parse_iff("pos:\t0\nflags:\t02\n") is None
