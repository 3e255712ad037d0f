"""The libvirt tier: a real libvirtd (started by the test in its own network and mount
namespaces, stopped by PID) runs TCG domains whose `type='ethernet'` NICs use the
installed hook entries. Checked with `bridge -j`, `ip -j`, `tc -j`, virsh and the
guest's console."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

import libvirttools
import qemutools
from conftest import CLI, GUEST_DIR, SEED_CONFIG, Hooks, Netns, cannot_run, require_guest, sh
from qemutools import wait_for

LANS = {0: ("br0", "192.0.2.1"), 1: ("br1", "198.51.100.1")}


class Lab:
    def __init__(self, host: Netns, hooks: Hooks, daemon: libvirttools.Libvirtd, base: Path):
        self.host, self.hooks, self.daemon, self.base = host, hooks, daemon, base

    def nics(self, vm, *vlans: int) -> str:
        """The <interface> elements `qemu-ifhooks libvirt-xml` prints for this VM (None:
        no VM name, so libvirt picks the TAP names, vnetN)."""
        named = ["--vm", vm] if vm else []
        done = sh(CLI, "libvirt-xml", *map(str, vlans), *named, "--hook-dir",
                  self.hooks.dir, env=self.hooks.env())
        return done.stdout

    def create(self, vm: str, nics: str, cmdline: str, check: bool = True):
        console = self.base / f"{vm}.console"
        xml = self.base / f"{vm}.xml"
        xml.write_text(libvirttools.domain_xml(vm, GUEST_DIR.resolve(), cmdline, [nics], console))
        return self.daemon.virsh("create", str(xml), check=check), console

    def qemu_pids(self) -> list:
        """QEMU processes in the host namespace (libvirtd is not one)."""
        pids = sh("ip", "netns", "pids", self.host.name).stdout.split()
        return [p for p in pids if Path(f"/proc/{p}/comm").read_text().startswith("qemu")]


@pytest.fixture(scope="module")
def lab(request):
    """The seed's two LANs, hooks installed with --config, and libvirtd in the host
    namespace: shared by the module's tests, which each remove their own domains."""
    require_guest()
    for tool in ("libvirtd", "virsh", "unshare"):
        if shutil.which(tool) is None:
            cannot_run(f"needs {tool} (apt-get install {libvirttools.PACKAGES})")
    made = []

    def make_netns(prefix: str) -> Netns:
        ns = Netns(f"{prefix}-{uuid.uuid4().hex[:8]}")
        sh("ip", "netns", "add", ns.name)
        made.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    base = Path(tempfile.mkdtemp(prefix="qemu-ifhooks-libvirt."))
    base.chmod(0o755)
    daemon = None

    def finalize():
        if daemon is not None:
            daemon.stop()
        for ns in made:
            ns.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    request.addfinalizer(finalize)
    host, _ = qemutools.make_lab(make_netns, "qih-lv")
    hooks = Hooks(base / "hooks")
    hooks.write_config(SEED_CONFIG)
    sh(CLI, "install", "--dir", hooks.dir, "--config", hooks.config)
    daemon = libvirttools.Libvirtd(host, base)
    daemon.start()
    return Lab(host, hooks, daemon, base)


def cmdline(addresses, watch: int = 0) -> str:
    nets = ";".join(f"{address},{LANS[vlan][1]}" for vlan, address in addresses)
    return f"console=ttyS0 panic=-1 quiet qih.net={nets} qih.wait=90 qih.watch={watch}"


def watched(console, nic: int) -> list:
    return [line.split()[3] for line in qemutools.console_lines(console)
            if line.startswith(f"QIH-WATCH eth{nic} ")]


def tap_gone_everywhere(lab, *taps: str) -> bool:
    """No TAP, no record and no QEMU left in the host namespace."""
    return all(lab.host.link(t) is None for t in taps) and \
        not set(taps) & set(lab.host.records()) and lab.qemu_pids() == []


def root_qdisc(ns, dev: str) -> list:
    out = sh("tc", "-n", ns.name, "-j", "qdisc", "show", "dev", dev).stdout
    return [q["kind"] for q in json.loads(out) if q.get("root")]


def test_domain_on_our_entries_reaches_both_lans_and_is_put_back(lab):
    """Two NICs from `libvirt-xml`: on their bridges while the domain runs, the guest
    pings both LANs; after the bridges are deleted, `up` puts them back (QEMU is now
    the recorded owner, not libvirtd); `virsh destroy` leaves nothing behind."""
    host = lab.host
    done, console = lab.create("lv1", lab.nics("lv1", 0, 1),
                               cmdline([(0, "192.0.2.21/24"), (1, "198.51.100.21/24")], 900))
    assert done.returncode == 0, done.stderr
    assert host.ports("br0") == ["eth0", "lv1-0"] and host.ports("br1") == ["eth1", "lv1-1"]
    assert root_qdisc(host, "lv1-0") == ["noqueue"]  # libvirt's, added after our script
    daemon_pid = str(lab.daemon.process.pid)
    assert {r["pid"] for r in host.records().values()} == {daemon_pid}  # the hook's parent

    def guest_sees(result: str, timeout: float) -> bool:
        return wait_for(lambda: all(watched(console, i)[-1:] == [result] for i in (0, 1)),
                        timeout)
    assert guest_sees("OK", 300), qemutools.console_lines(console)
    host.ip("link", "del", "br0")
    host.ip("link", "del", "br1")
    assert guest_sees("FAIL", 120), qemutools.console_lines(console)
    out = lab.hooks.cli(host, "up")
    [qemu] = lab.qemu_pids()
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"vlan.0: br0: set up with uplink eth0; re-plugged lv1-0 " \
                         f"(pid {qemu} vm lv1)\nvlan.1: br1: set up with uplink eth1; " \
                         f"re-plugged lv1-1 (pid {qemu} vm lv1)\n", out.stdout
    assert host.ports("br0") == ["eth0", "lv1-0"] and host.ports("br1") == ["eth1", "lv1-1"]
    assert guest_sees("OK", 120), qemutools.console_lines(console)
    assert {r["pid"] for r in host.records().values()} == {qemu}

    lab.daemon.virsh("destroy", "lv1")
    assert wait_for(lambda: tap_gone_everywhere(lab, "lv1-0", "lv1-1"), 60), host.records()
    assert "lv1" not in lab.daemon.domains()
    assert host.ports("br0") == ["eth0"] and host.ports("br1") == ["eth1"]


def test_guest_poweroff_leaves_nothing_behind(lab):
    done, console = lab.create("lv2", lab.nics("lv2", 1), cmdline([(1, "198.51.100.22/24")]))
    assert done.returncode == 0, done.stderr
    assert "lv2-1" in lab.host.ports("br1")
    assert wait_for(lambda: "lv2" not in lab.daemon.domains(), 300), \
        qemutools.console_lines(console)
    assert qemutools.console_lines(console) == ["QIH-PING eth0 198.51.100.1 OK", "QIH-DONE"]
    assert wait_for(lambda: tap_gone_everywhere(lab, "lv2-1"), 60), lab.host.records()
    assert lab.host.ports("br1") == ["eth1"]
    log = (lab.base / "var-log-libvirt" / "qemu" / "lv2.log").read_text()
    taints = [l.split("is tainted: ")[1] for l in log.splitlines() if "is tainted: " in l]
    # what libvirt logs for any <script>; high-privileges: qemu.conf's user = "root"
    assert sorted(taints) == ["high-privileges", "shell-scripts"], log


def test_failing_ifup_is_in_virshs_error_and_the_domain_does_not_start(lab):
    """GRO off on eth0: our one line inside virsh's error, no domain; libvirt then runs
    every downscript, with "(null)" for a TAP whose name it picked and already deleted:
    each exits 0 and changes nothing (the NIC attached to br1 went away with its TAP)."""
    host = lab.host
    calls = lab.base / "downscripts.log"
    nics = lab.nics(None, 1, 0)
    for bridge in ("br0", "br1"):
        entry = lab.hooks.dir / f"ifdown-{bridge}"
        wrapper = libvirttools.logging_wrapper(lab.base / f"logged-ifdown-{bridge}", entry,
                                               calls)
        nics = nics.replace(f'"{entry}"', f'"{wrapper}"')
    assert lab.hooks.cli(host, "up").returncode == 0  # bridges exist whatever ran before
    before = host.snapshot()
    host.run("ethtool", "-K", "eth0", "gro", "off", check=True)
    try:
        done, _ = lab.create("lv3", nics, cmdline([(0, "192.0.2.23/24")]), check=False)
    finally:
        host.run("ethtool", "-K", "eth0", "gro", "on", check=True)
    assert done.returncode == 1
    ours = re.search(r"qemu-ifhooks: ifup-br0: (vnet\d+): uplink eth0 has GRO disabled; "
                     r"run 'ethtool -K eth0 gro on'", done.stderr)
    assert ours, done.stderr
    assert "lv3" not in lab.daemon.domains()
    assert wait_for(lambda: host.snapshot() == before and lab.qemu_pids() == [], 60)
    assert not [t for t in host.records() if t.startswith("vnet")]
    ran = calls.read_text().splitlines()
    assert ran and all(line.endswith(" 0") for line in ran), ran
    assert "(null) 0" in ran, ran


def test_attach_device_runs_ifup(lab):
    done, _ = lab.create("lv4", lab.nics("lv4", 0), cmdline([(0, "192.0.2.24/24")], 900))
    assert done.returncode == 0, done.stderr
    nic = lab.base / "lv4-nic.xml"
    nic.write_text(lab.nics("lv4", 1))
    done = lab.daemon.virsh("attach-device", "lv4", str(nic), "--live", check=False)
    assert done.returncode == 0, done.stderr
    assert lab.host.ports("br1") == ["eth1", "lv4-1"]
    assert lab.host.records()["lv4-1"]["bridge"] == "br1"
    lab.daemon.virsh("destroy", "lv4")
    assert wait_for(lambda: tap_gone_everywhere(lab, "lv4-0", "lv4-1"), 60)


def test_libvirt_replaces_a_root_qdisc_the_script_added(lab):
    """What libvirt 9's `tc qdisc add dev TAP root handle 0: noqueue` after the script
    does to a root qdisc the script installed: replaces it, and the domain starts. A
    hook that shapes a guest with a root qdisc on its TAP loses it under libvirt."""
    wrapper = lab.base / "ifup-tbf"
    wrapper.write_text(f"#!/bin/sh\n{lab.hooks.dir}/ifup-br0 \"$@\" || exit $?\n"
                       f"tc qdisc add dev \"$1\" root tbf rate 4mbit burst 32k latency 50ms\n")
    wrapper.chmod(0o755)
    nics = lab.nics("lv5", 0).replace(f'"{lab.hooks.dir}/ifup-br0"', f'"{wrapper}"')
    done, _ = lab.create("lv5", nics, cmdline([(0, "192.0.2.25/24")], 900))
    assert done.returncode == 0, done.stderr
    assert "lv5-0" in lab.host.ports("br0")
    assert root_qdisc(lab.host, "lv5-0") == ["noqueue"]
    lab.daemon.virsh("destroy", "lv5")
    assert wait_for(lambda: tap_gone_everywhere(lab, "lv5-0"), 60)


def test_the_hooks_rate_limits_and_rules_survive_libvirts_root_qdisc(lab):
    """The hooks shape a guest off the TAP's root qdisc (clsact and ifb devices), so
    libvirt's noqueue there leaves the limits in force; the rules hold too, with the
    guest's MAC from the [port] table (libvirt, not QEMU, runs the script)."""
    lab.hooks.write_config(SEED_CONFIG.replace('uplink = "eth0"\n', 'uplink = "eth0"\nguest_rx_mbit = 4\n'
                                               'guest_tx_mbit = 8\nport_security = "mac"\n')
                           + '\n[port."lv6-*"]\nmac = "52:54:00:00:06:00"\n')
    nics = re.sub(r"<mac address=.[0-9a-f:]+./>", "<mac address='52:54:00:00:06:00'/>", lab.nics("lv6", 0))
    assert "52:54:00:00:06:00" in nics
    try:
        check_limits_and_rules(lab, nics)
    finally:
        lab.hooks.write_config(SEED_CONFIG)


def check_limits_and_rules(lab, nics: str) -> None:
    done, _ = lab.create("lv6", nics, cmdline([(0, "192.0.2.26/24")], 900))
    assert done.returncode == 0, done.stderr
    assert root_qdisc(lab.host, "lv6-0") == ["noqueue"]  # libvirt's step ran
    qdiscs = json.loads(sh("tc", "-n", lab.host.name, "-j", "qdisc", "show").stdout)
    assert {q["dev"]: q["options"]["rate"] for q in qdiscs if q["kind"] == "tbf"} == \
        {"rx-lv6-0": 500000, "tx-lv6-0": 1000000}
    assert any(q["kind"] == "clsact" and q["dev"] == "lv6-0" for q in qdiscs)
    rules = lab.host.run("nft", "list", "chain", "bridge", "qemu_ifhooks", "port_lv6-0", check=True).stdout
    assert "ether saddr != 52:54:00:00:06:00 drop" in rules
    lab.daemon.virsh("destroy", "lv6")
    assert wait_for(lambda: tap_gone_everywhere(lab, "lv6-0"), 60)
    # The downscript, run after QEMU exited, removed the TAP's rules and ifb devices.
    assert not {"rx-lv6-0", "tx-lv6-0"} & {l["ifname"] for l in lab.host.links()}
    assert "port_lv6-0" not in lab.host.run("nft", "list", "ruleset").stdout
