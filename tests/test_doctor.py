"""`qemu-ifhooks check`: each planted problem is found, in a namespace of the test's own,
and a clean namespace is reported clean. The plants are confirmed with iproute2, ethtool,
nft and ping before check is asked about them; the evaluation is also tested on plain
values."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conftest import CLI, sh

from qemu_ifhooks.config import parse_config
from qemu_ifhooks.doctor import (FAIL, OK, WARN, Facts, HookDir, HookEntry, evaluate,
                                 render_json, render_text)
from qemu_ifhooks.firewall import BRIDGE, IPV4, iptables_drops, nft_drops
from qemu_ifhooks.inventory import BridgeInfo, Feature, Inventory, LinkInfo

CONFIG = '[vlan.0]\nbridge = "br0"\nuplink = "eth0"\n'


# --- in a namespace -----------------------------------------------------------------------

@pytest.fixture
def host(netns, hooks):
    """A clean VM host: uplink eth0 (GRO on), br0 built by the hook with tap0 on it, the
    hooks installed by `qemu-ifhooks install`."""
    netns.veth("eth0", "lan0")
    hooks.write_config(CONFIG)
    sh(CLI, "install", "--dir", hooks.dir, env=hooks.env())
    netns.hold_taps("tap0", "tap1")
    assert hooks.run(netns, "ifup-br0", "tap0").returncode == 0
    return netns


def check(ns, hooks, *extra):
    done = ns.run(str(CLI), "check", "--json", "--hook-dir", str(hooks.dir), *extra,
                  env=hooks.env())
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    return done.returncode, report


def problems(report):
    return [(f["severity"], f["check"], f["subject"]) for f in report["findings"]
            if f["severity"] != OK]


def finding(report, check_id, subject):
    found = [f for f in report["findings"] if f["check"] == check_id and f["subject"] == subject]
    assert len(found) == 1, (check_id, subject, report["findings"])
    return found[0]


def test_clean_namespace_is_clean(host, hooks):
    assert host.ports("br0") == ["eth0", "tap0"]
    status, report = check(host, hooks)
    assert problems(report) == [], report
    assert status == 0
    assert report["result"] == "ok" and report["counts"]["fail"] == 0
    checks = {f["check"] for f in report["findings"]}
    assert {"config", "bridge", "bridge.stp", "bridge.mtu", "bridge.mac", "uplink",
            "uplink.addresses", "offload", "netfilter", "tun", "hook", "kernel"} <= checks
    text = host.run(str(CLI), "check", "--hook-dir", str(hooks.dir), env=hooks.env())
    assert text.returncode == 0 and text.stderr == ""
    lines = text.stdout.splitlines()
    assert all(line.startswith("ok   ") for line in lines[:-1]), lines
    assert lines[-1] == f"{len(report['findings'])} ok, 0 warn, 0 fail"


def test_stp_with_forward_delay(netns, hooks):
    netns.veth("eth0", "lan0")
    hooks.write_config(CONFIG)
    netns.bridge("br0", "stp_state", "1", "forward_delay", "1500")
    info = netns.link("br0")["linkinfo"]["info_data"]
    assert (info["stp_state"], info["forward_delay"]) == (1, 1500)  # the plant, per iproute2
    status, report = check(netns, hooks)
    stp = finding(report, "bridge.stp", "br0")
    assert stp["severity"] == WARN
    assert "STP is on" in stp["message"] and "30 s" in stp["message"]
    assert stp["fix"] == "ip link set dev br0 type bridge stp_state 0"
    # A bridge made by hand also has a MAC that follows its ports.
    assert finding(report, "bridge.mac", "br0")["severity"] == WARN
    netns.run(*stp["fix"].split(), check=True)
    _, report = check(netns, hooks)
    assert finding(report, "bridge.stp", "br0")["severity"] == OK


def test_tap_that_lowered_the_bridge_mtu(host, hooks):
    host.ip("link", "set", "tap1", "mtu", "1400")
    host.ip("link", "set", "tap1", "master", "br0")  # by hand, not through the hook
    assert host.link("br0")["mtu"] == 1400  # the kernel followed the smallest port
    status, report = check(host, hooks)
    eth0 = finding(report, "bridge.mtu", "eth0")
    assert eth0["severity"] == WARN
    assert "above br0's 1400" in eth0["message"] and "tap1" in eth0["message"]
    assert eth0["fix"].startswith("ip link set dev br0 mtu 1500")
    assert status == 0  # warnings do not fail the check


def test_port_below_a_pinned_bridge_mtu(netns, hooks):
    # 9000, not 1500: setting a bridge's MTU to the value it already has does not pin it.
    netns.veth("eth0", "lan0")
    netns.ip("link", "set", "eth0", "mtu", "9000")
    hooks.write_config(CONFIG + "mtu = 9000\n")
    sh(CLI, "install", "--dir", hooks.dir, env=hooks.env())
    netns.hold_taps("tap0")
    assert hooks.run(netns, "ifup-br0", "tap0").returncode == 0
    netns.ip("link", "set", "tap0", "mtu", "1400")
    assert (netns.link("br0")["mtu"], netns.link("tap0")["mtu"]) == (9000, 1400)
    status, report = check(netns, hooks)
    tap = finding(report, "bridge.mtu", "tap0")
    assert tap["severity"] == FAIL and "below br0's 9000" in tap["message"]
    assert tap["fix"] == "ip link set dev tap0 mtu 9000"
    assert problems(report) == [(FAIL, "bridge.mtu", "tap0")]
    assert status == 1


def test_gro_off_on_the_uplink(host, hooks):
    host.run("ethtool", "-K", "eth0", "gro", "off", check=True)
    assert host.offloads("eth0")["generic-receive-offload"] == "off"
    status, report = check(host, hooks)
    gro = finding(report, "offload", "eth0")
    assert gro["severity"] == FAIL  # offload_check = "enforce": the hook would refuse
    assert "rx-gro (GRO) is off" in gro["message"]
    assert gro["fix"] == "ethtool -K eth0 gro on"
    assert problems(report) == [(FAIL, "offload", "eth0")]
    assert status == 1
    hooks.write_config(CONFIG + 'offload_check = "warn"\n')
    status, report = check(host, hooks)
    assert (status, finding(report, "offload", "eth0")["severity"]) == (0, WARN)


def test_offloads_of_the_uplinks_lower_device(netns, hooks):
    """A stacked uplink (here a macvlan; 802.1Q is not in this kernel) is checked together
    with the device it sits on."""
    netns.veth("eth0", "lan0")
    netns.ip("link", "add", "link", "eth0", "name", "mv0", "type", "macvlan", "mode", "bridge")
    netns.run("ethtool", "-K", "eth0", "gro", "off", check=True)
    assert netns.link("mv0")["link"] == "eth0"
    assert netns.offloads("eth0")["generic-receive-offload"] == "off"
    hooks.write_config(CONFIG.replace('"eth0"', '"mv0"'))
    sh(CLI, "install", "--dir", hooks.dir, env=hooks.env())
    status, report = check(netns, hooks)
    lower = finding(report, "offload", "eth0")
    assert lower["severity"] == FAIL
    assert lower["message"].startswith("lower device of mv0: rx-gro (GRO) is off")
    assert lower["fix"] == "ethtool -K eth0 gro on"
    # A macvlan follows its lower device's GRO, so it is flagged too.
    assert problems(report) == [(FAIL, "offload", "mv0"), (FAIL, "offload", "eth0")]
    netns.run("ethtool", "-K", "eth0", "gro", "on", check=True)
    netns.run("ethtool", "-K", "mv0", "gro", "on", check=True)
    status, report = check(netns, hooks)
    assert (status, problems(report)) == (0, [])
    assert finding(report, "offload", "eth0")["message"].startswith("lower device of mv0: ")


@pytest.mark.parametrize("plant, severity", [
    ("nft add table ip filter && nft 'add chain ip filter FORWARD "
     "{ type filter hook forward priority 0 ; policy drop ; }'", FAIL),
    ("iptables -A FORWARD -j DROP", FAIL),
    ("iptables -P FORWARD DROP", FAIL),
    ("iptables -A FORWARD -s 203.0.113.0/24 -j DROP", WARN),
    ("nft add table inet docker && nft 'add chain inet docker forward "
     "{ type filter hook forward priority 0 ; }' && "
     "nft add chain inet docker isolate && nft add rule inet docker forward jump isolate && "
     "nft add rule inet docker isolate ip saddr 203.0.113.0/24 drop", WARN),
    ("nft add table bridge vms && nft 'add chain bridge vms forward "
     "{ type filter hook forward priority 0 ; policy drop ; }'", FAIL),
], ids=["nft-policy", "iptables-rule", "iptables-policy", "conditional", "jumped-chain",
        "bridge-family"])
def test_dropping_forward_chain_with_br_netfilter(host, hooks, plant, severity):
    sysctl = host.run("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables", check=True)
    assert sysctl.stdout.strip() == "1"  # per namespace; br_netfilter is built in here
    host.run("sh", "-c", plant, check=True)
    assert "drop" in host.run("nft", "list", "ruleset", check=True).stdout.lower()
    status, report = check(host, hooks)
    found = [f for f in report["findings"] if f["check"] == "netfilter"]
    assert [f["severity"] for f in found] == [severity], found
    assert status == (1 if severity == FAIL else 0)
    if "bridge vms" not in plant:
        assert "bridge-nf-call-iptables = 1" in found[0]["message"]
        assert "sysctl -w net.bridge.bridge-nf-call-iptables=0" in found[0]["fix"]
        # With the sysctls off, bridged frames no longer pass the IP chains.
        for key in ("iptables", "ip6tables"):
            host.run("sysctl", "-qw", f"net.bridge.bridge-nf-call-{key}=0", check=True)
        status, report = check(host, hooks)
        assert status == 0 and problems(report) == []


def test_dropping_forward_chain_really_eats_bridged_traffic(host, hooks, make_netns):
    """The planted problem is real: a guest-side peer cannot reach the LAN through br0
    until check's fix is applied."""
    lan, guest = make_netns("qih-lan"), make_netns("qih-guest")
    host.ip("link", "set", "lan0", "netns", lan.name)
    lan.ip("addr", "add", "192.0.2.1/24", "dev", "lan0")
    lan.ip("link", "set", "lan0", "up")
    host.ip("link", "add", "name", "vport", "type", "veth", "peer", "name", "gport")
    host.ip("link", "set", "gport", "netns", guest.name)
    host.ip("link", "set", "vport", "master", "br0", "up")
    guest.ip("addr", "add", "192.0.2.10/24", "dev", "gport")
    guest.ip("link", "set", "gport", "up")
    ping = ("busybox", "ping", "-c", "1", "-W", "1", "192.0.2.1")
    assert guest.run(*ping).returncode == 0
    host.run("iptables", "-P", "FORWARD", "DROP", check=True)
    assert guest.run(*ping).returncode != 0
    status, report = check(host, hooks)
    found = finding(report, "netfilter", "nft ip filter FORWARD")
    assert (status, found["severity"]) == (1, FAIL)
    fix = found["fix"].split(" (persist")[0].split()
    assert fix[:2] == ["sysctl", "-w"]
    host.run(*fix, check=True)
    assert guest.run(*ping).returncode == 0
    assert check(host, hooks)[0] == 0


def test_non_executable_hook(host, hooks):
    entry = Path(hooks.dir) / "ifup-br0"
    entry.unlink()
    entry.write_text("#!/bin/sh\nexec /usr/libexec/qemu-ifhooks/qemu-ifhook \"$@\"\n")
    entry.chmod(0o644)
    assert not os.access(entry, os.X_OK)
    status, report = check(host, hooks)
    hook = finding(report, "hook", str(entry))
    assert hook["severity"] == FAIL and "not executable" in hook["message"]
    assert hook["fix"] == f"chmod +x {entry}"
    assert status == 1
    assert problems(report) == [(FAIL, "hook", str(entry))]


def test_missing_config_is_a_failing_finding(netns, hooks):
    status, report = check(netns, hooks)
    config = finding(report, "config", str(hooks.config))
    assert config["severity"] == FAIL and "not found" in config["message"]
    assert status == 1


def test_insecure_config(netns, hooks):
    netns.veth("eth0", "lan0")
    hooks.write_config(CONFIG, mode=0o666)
    status, report = check(netns, hooks)
    config = finding(report, "config", str(hooks.config))
    assert config["severity"] == FAIL and "chmod go-w" in config["fix"]
    assert status == 1


def test_check_takes_at_most_a_second(host, hooks):
    start = time.monotonic()
    check(host, hooks)
    assert time.monotonic() - start < 3  # generous: pyroute2 import, nft and ethtool reads


# --- on plain values ------------------------------------------------------------------------

def link(name, kind=None, mtu=1500, master=None, **extra):
    fields = dict(index=1, name=name, kind=kind, tun_type="tap" if kind == "tun" else None,
                  admin_up=True, operstate="UP", mtu=mtu, address="02:00:00:00:00:01",
                  master=master, lower=None, addr_assign_type=3)
    fields.update(extra)
    return LinkInfo(**fields)


def bridge(name="br0", stp=False, delay=0.0, **extra):
    return link(name, "bridge", bridge=BridgeInfo(stp, delay, False, False, None), **extra)


def facts(config_text=CONFIG, links=(), **extra):
    fields = dict(config_path="/etc/q.toml",
                  config=parse_config(__import__("tomllib").loads(config_text), "/etc/q.toml"),
                  inventory=Inventory({l.name: l for l in links}),
                  features={"eth0": {"rx-lro": Feature(False, True), "rx-gro": Feature(True, False),
                                     "rx-gro-hw": Feature(False, True)}},
                  bridge_nf={"iptables": 1, "ip6tables": 1})
    fields.update(extra)
    return Facts(**fields)


CLEAN = (bridge(), link("eth0", "veth", master="br0"), link("tap0", "tun", master="br0"))


def severities(findings):
    return [(f.severity, f.check, f.subject) for f in findings if f.severity != OK]


def test_evaluate_clean():
    assert severities(evaluate(facts(links=CLEAN))) == []


def test_evaluate_floating_mac_and_missing_uplink():
    findings = evaluate(facts(links=(bridge(addr_assign_type=1),)))
    assert severities(findings) == [(WARN, "bridge.mac", "br0"), (FAIL, "uplink", "eth0")]


def test_evaluate_lro_and_lower_device():
    lower = {"rx-lro": Feature(True, False), "rx-gro": Feature(True, False)}
    uplink = link("eth0.5", "vlan", master="br0", lower="eth0")
    findings = evaluate(facts(CONFIG.replace('"eth0"', '"eth0.5"'),
                              links=(bridge(), uplink, link("eth0")),
                              features={"eth0.5": {"rx-gro": Feature(True, False)},
                                        "eth0": lower}))
    assert severities(findings) == [(FAIL, "offload", "eth0")]
    lro = [f for f in findings if f.subject == "eth0" and f.severity == FAIL][0]
    assert lro.fix == "ethtool -K eth0 lro off"


def test_evaluate_addressed_uplink():
    uplink = link("eth0", "veth", global_addresses=("192.0.2.5/24",))
    findings = evaluate(facts(links=(uplink,)))
    assert severities(findings) == [(FAIL, "uplink.addresses", "eth0")]
    findings = evaluate(facts(CONFIG + "allow_addressed_uplink = true\n", links=(uplink,)))
    assert severities(findings) == [(WARN, "uplink.addresses", "eth0")]


def test_evaluate_bridge_absent():
    assert severities(evaluate(facts(links=(link("eth0", "veth"),)))) == []
    findings = evaluate(facts(CONFIG + "create = false\n", links=(link("eth0", "veth"),)))
    assert severities(findings) == [(FAIL, "bridge", "br0")]
    assert findings[1].fix == "qemu-ifhooks up 0"


def test_evaluate_netfilter_per_bridge_switch():
    drop = nft_drops(json.dumps({"nftables": [{"chain": {
        "family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward",
        "policy": "drop"}}]}))
    off = {"iptables": 0, "ip6tables": 0}
    assert severities(evaluate(facts(links=CLEAN, drops=tuple(drop), bridge_nf=off))) == []
    nf_bridge = link("br0", "bridge", bridge=BridgeInfo(False, 0, True, False, None))
    findings = evaluate(facts(links=(nf_bridge,) + CLEAN[1:], drops=tuple(drop), bridge_nf=off))
    assert severities(findings) == [(FAIL, "netfilter", "nft ip filter FORWARD")]
    assert "nf_call_iptables on br0" in findings[-4].message or \
        any("nf_call_iptables on br0" in f.message for f in findings)
    assert severities(evaluate(facts(links=CLEAN, drops=tuple(drop), bridge_nf=None))) == []


def test_evaluate_hooks():
    entries = (HookEntry("ifup-br0", "/h/ifup-br0", True, True, True, "/old/qemu-ifhook"),
               HookEntry("ifdown-br0", "/h/ifdown-br0", False, False, False))
    findings = evaluate(facts(links=CLEAN, hook_program="/new/qemu-ifhook",
                              hook_dirs=(HookDir("/h", True, entries), HookDir("/x", False))))
    assert severities(findings) == [(WARN, "hook", "/h/ifup-br0"), (WARN, "hook", "/h/ifdown-br0"),
                                    (WARN, "hook", "/x")]
    assert all(f.fix.startswith("qemu-ifhooks install --dir") for f in findings
               if f.check == "hook")


def test_evaluate_tag_and_tun():
    findings = evaluate(facts(CONFIG + "tag = 5\n", links=CLEAN, tun_problem="missing",
                              vlan_support=False))
    assert severities(findings) == [(FAIL, "tun", "/dev/net/tun"), (FAIL, "kernel", "vlan.0.tag")]


def test_evaluate_bridge_per_vlan():
    config = CONFIG + "tag = 5\n"  # br0's uplink port is eth0.5
    absent = evaluate(facts(config, links=(link("eth0", "veth"),)))
    assert severities(absent) == []
    port = [f for f in absent if f.check == "uplink"][0]
    assert (port.subject, port.message) == (
        "eth0.5", "absent; the first ifup on vlan.0 creates it on eth0 (802.1Q tag 5)")
    assert [f.subject for f in absent if f.check == "offload"] == ["eth0"]
    assert severities(evaluate(facts(config, links=(link("eth0", "veth"),), vlan_support=False))) \
        == [(FAIL, "kernel", "vlan.0.tag")]

    made = (bridge(), link("eth0", "veth"),
            link("eth0.5", "vlan", master="br0", lower="eth0", vlan_id=5))
    findings = evaluate(facts(config, links=made, vlan_support=False,
                              features={"eth0.5": {"rx-gro": Feature(True, False)},
                                        "eth0": {"rx-lro": Feature(True, False)}}))
    assert severities(findings) == [(FAIL, "offload", "eth0")]  # the lower device's LRO
    assert [f.message for f in findings if f.check == "uplink"] == ["port of br0, up"]

    for impostor in (link("eth0.5", "veth"), link("eth0.5", "vlan", lower="eth0", vlan_id=6),
                     link("eth0.5", "vlan", lower="eth1", vlan_id=5)):
        findings = evaluate(facts(config, links=(link("eth0", "veth"), impostor)))
        assert severities(findings) == [(FAIL, "uplink", "eth0.5")], impostor
    assert severities(evaluate(facts(config))) == [(FAIL, "uplink", "eth0")]


VLAN_AWARE = CONFIG.replace("[vlan.0]", "[vlan.0]\ntag = 101") + \
    CONFIG.replace("[vlan.0]", "[vlan.1]\ntag = 102")


def vlan_bridge(filtering=True, default_pvid=0):
    return link("br0", "bridge", bridge=BridgeInfo(False, 0, False, False, filtering, default_pvid))


def test_evaluate_vlan_aware_bridge():
    uplink = link("eth0", "veth", master="br0", port_vids=(101, 102))
    findings = evaluate(facts(VLAN_AWARE, links=(vlan_bridge(), uplink), vlan_filtering_support=True))
    assert severities(findings) == []
    assert [(f.subject, f.message) for f in findings if f.check == "bridge.vlan"] == [
        ("br0", "VLAN filtering on, no default PVID; VLANs 101, 102"),
        ("eth0", "carries VLANs 101, 102 of br0")]

    findings = evaluate(facts(VLAN_AWARE, links=(vlan_bridge(filtering=False, default_pvid=1),
                                                 uplink), vlan_filtering_support=True))
    assert severities(findings) == [(FAIL, "bridge.vlan", "br0")]
    assert [f.fix for f in findings if f.severity == FAIL] == [
        "with no guest on it: ip link set dev br0 type bridge vlan_filtering 1 vlan_default_pvid 0"]
    findings = evaluate(facts(VLAN_AWARE, links=(vlan_bridge(default_pvid=1), uplink),
                              vlan_filtering_support=True))
    assert severities(findings) == [(WARN, "bridge.vlan", "br0")]

    missing = link("eth0", "veth", master="br0", port_vids=(1, 101))
    findings = evaluate(facts(VLAN_AWARE, links=(vlan_bridge(), missing),
                              vlan_filtering_support=True))
    assert severities(findings) == [(WARN, "bridge.vlan", "eth0")]
    assert [f.fix for f in findings if f.severity == WARN] == ["bridge vlan add dev eth0 vid 102"]

    # A kernel without VLAN filtering: said once per tagged segment, by the kernel check.
    lacking = evaluate(facts(VLAN_AWARE, links=(bridge(), link("eth0", "veth", master="br0")),
                             vlan_filtering_support=False))
    assert severities(lacking) == [(FAIL, "kernel", "vlan.0.tag"), (FAIL, "kernel", "vlan.1.tag")]
    assert "CONFIG_BRIDGE_VLAN_FILTERING" in lacking[-1].message

    # No bridge to look at and no kernel config: check cannot tell, and says so.
    unknown = evaluate(facts(VLAN_AWARE, links=(link("eth0", "veth"),)))
    assert severities(unknown) == [(WARN, "kernel", "vlan.0.tag"), (WARN, "kernel", "vlan.1.tag")]


def test_kernel_config_and_vlan_filtering_support(tmp_path):
    import gzip

    from qemu_ifhooks.gather import kernel_config, vlan_filtering_support

    text = "# comment\nCONFIG_BRIDGE=y\n# CONFIG_VLAN_8021Q is not set\nCONFIG_X=\"a=b\"\n"
    with gzip.open(tmp_path / "config.gz", "wt") as f:
        f.write(text)
    (tmp_path / "config-6.1").write_text(text + "CONFIG_BRIDGE_VLAN_FILTERING=y\n")
    got = kernel_config([str(tmp_path / "absent.gz"), str(tmp_path / "config.gz")])
    assert got == {"CONFIG_BRIDGE": "y", "CONFIG_X": '"a=b"'}
    assert kernel_config([str(tmp_path / "absent")]) is None
    plain = kernel_config([str(tmp_path / "config-6.1")])
    assert plain is not None and plain["CONFIG_BRIDGE_VLAN_FILTERING"] == "y"
    assert vlan_filtering_support(Inventory(), got) is False
    assert vlan_filtering_support(Inventory(), plain) is True
    assert vlan_filtering_support(Inventory(), None) is None
    # A bridge is the kernel's own word, whatever the config file says.
    assert vlan_filtering_support(Inventory({"br0": vlan_bridge()}), got) is True
    assert vlan_filtering_support(Inventory({"br0": bridge()}), plain) is False


def test_iptables_save_parsing():
    drops = iptables_drops("-P FORWARD DROP\n-A FORWARD -j DROP\n"
                           "-A FORWARD -i br0 -j REJECT --reject-with icmp-port-unreachable\n"
                           "-A FORWARD -j ACCEPT\n", IPV4, "iptables-legacy")
    assert [(d.policy, d.unconditional) for d in drops] == [(True, True), (False, True),
                                                            (False, False)]


def test_nft_bridge_family_and_unrelated_hooks():
    ruleset = {"nftables": [
        {"chain": {"family": "bridge", "table": "t", "name": "f", "hook": "forward",
                   "policy": "accept"}},
        {"rule": {"family": "bridge", "table": "t", "chain": "f", "handle": 7,
                  "expr": [{"counter": None}, {"drop": None}]}},
        {"chain": {"family": "ip", "table": "t", "name": "in", "hook": "input",
                   "policy": "drop"}},
    ]}
    drops = nft_drops(json.dumps(ruleset))
    assert [(d.where, d.paths, d.unconditional, d.rule) for d in drops] == [
        ("nft bridge t f", (BRIDGE,), True, "rule handle 7")]


def test_json_and_text_forms():
    findings = evaluate(facts(links=(bridge(stp=True, delay=15.0),) + CLEAN[1:]))
    report = json.loads(render_json(findings))
    assert set(report) == {"version", "result", "counts", "findings"}
    assert report["version"] == 1 and report["result"] == WARN
    assert all(set(f) == {"severity", "check", "subject", "message", "fix"}
               for f in report["findings"])
    text = render_text(findings).splitlines()
    assert len(text) == len(findings) + 1
    assert any(line.startswith("warn br0: STP is on") and
               line.endswith("; fix: ip link set dev br0 type bridge stp_state 0")
               for line in text)


@pytest.mark.parametrize("plant", ["missing", "insecure"])
def test_entry_whose_config_is_unusable(netns, hooks, plant):
    """An entry installed with --config reads only that file: check says when it cannot."""
    netns.veth("eth0", "lan0")
    hooks.write_config(CONFIG)
    baked = hooks.dir / "baked.toml"
    baked.write_text(CONFIG)
    baked.chmod(0o644)
    sh(CLI, "install", "--dir", hooks.dir, "--config", baked, env=hooks.env())
    _, report = check(netns, hooks)
    entry = str(hooks.dir / "ifup-br0")
    assert finding(report, "hook.config", entry)["severity"] == OK
    if plant == "missing":
        baked.unlink()
    else:
        baked.chmod(0o664)
    status, report = check(netns, hooks)
    found = finding(report, "hook.config", entry)
    assert found["severity"] == FAIL, found
    assert ("not found" if plant == "missing" else "chmod go-w") in found["message"]
    assert status == 1
    done = hooks.run(netns, "ifup-br0", "tap0")  # and the entry does fail that way
    assert done.returncode == (78 if plant == "missing" else 77), done.stderr
