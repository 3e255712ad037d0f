"""Reattach: ifup records what it attached; `qemu-ifhooks up` puts the TAPs of running
VMs back on their bridge after the bridge was deleted and built again, with everything
ifup gives them; `status` and `check` show such a TAP as detached. Checked with
`bridge -j` and `ip -j`; the records are symbolic links read directly."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import qemutools
from conftest import CLI, GUEST_DIR, RECORDS, require_guest, sh
from qemutools import wait_for

CONFIG = """\
[vlan.0]
bridge = "br0"
uplink = "eth0"

[vlan.1]
bridge = "br1"
mtu = 1400
"""


@pytest.fixture
def host(netns, hooks):
    """br0 (uplink eth0) with tap0 and tap1, br1 (MTU 1400, no uplink) with tap2: each
    TAP held open as QEMU holds it, attached by the installed ifup entries."""
    netns.veth("eth0", "lan0")
    hooks.write_config(CONFIG)
    sh(CLI, "install", "--dir", hooks.dir, "--config", hooks.config)
    netns.vm = netns.hold_taps("tap0", "tap1", "tap2")
    for tap, bridge in (("tap0", "br0"), ("tap1", "br0"), ("tap2", "br1")):
        done = hooks.run(netns, f"ifup-{bridge}", tap)
        assert done.returncode == 0, done.stderr
    assert netns.ports("br0") == ["eth0", "tap0", "tap1"] and netns.ports("br1") == ["tap2"]
    return netns


def up(ns, hooks, *args):
    done = hooks.cli(ns, "up", *args)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_ifup_records_the_attachment_and_ifdown_drops_it(host, hooks):
    records = host.records()
    assert sorted(records) == ["tap0", "tap1", "tap2"]
    assert records["tap2"] == {"tap": "tap2", "ifindex": str(host.link("tap2")["ifindex"]),
                               "vlan": "1", "bridge": "br1", "pid": str(os.getpid())}
    assert hooks.run(host, "ifdown-br1", "tap2").returncode == 0
    assert sorted(host.records()) == ["tap0", "tap1"]
    # libvirt's downscript after a failed start: "(null)", exit 0, nothing changes
    before = host.snapshot()
    assert hooks.run(host, "ifdown-br0", "(null)").returncode == 0
    assert host.snapshot() == before and sorted(host.records()) == ["tap0", "tap1"]


def test_a_repeated_ifup_rewrites_its_record_only_when_it_changed(host, hooks):
    path = Path(RECORDS) / f"{host.inode}-tap0"
    before = os.lstat(path)
    assert hooks.run(host, "ifup-br0", "tap0").returncode == 0  # the same parent: this test
    assert os.lstat(path).st_ino == before.st_ino
    entry = hooks.entry("ifup-br0")
    done = host.run("sh", "-c", f"{entry} tap0; true", env=hooks.env())  # another parent
    assert done.returncode == 0, done.stderr
    assert os.lstat(path).st_ino != before.st_ino
    assert host.records()["tap0"]["pid"] not in ("", str(os.getpid()))


def test_a_record_an_earlier_version_wrote_still_counts(host, hooks):
    """Earlier versions wrote records as regular files, one field a line: a package
    upgrade with VMs running must not lose them."""
    path = Path(RECORDS) / f"{host.inode}-tap2"
    fields = host.records()["tap2"]
    path.unlink()
    path.write_text("".join(f"{key}={value}\n" for key, value in fields.items()))
    host.ip("link", "del", "br1")
    assert "re-plugged tap2" in up(host, hooks)
    assert host.ports("br1") == ["tap2"]
    rewritten = host.records()["tap2"]  # by the re-plug, as a link, naming the holder
    assert rewritten == {**fields, "pid": str(host.vm.pid)}, rewritten


@pytest.mark.parametrize("cut", ["down --force", "ip link del"])
def test_up_puts_running_vms_back_on_their_rebuilt_bridges(host, hooks, cut):
    if cut == "down --force":
        assert hooks.cli(host, "down", "--force").returncode == 0
        assert host.link("br0") is None and host.link("br1") is None
    else:
        host.ip("link", "del", "br0")
        host.ip("link", "del", "br1")
    host.ip("link", "set", "tap2", "mtu", "1500")  # a new bridge must bring back 1400
    assert [host.master_of(t) for t in ("tap0", "tap1", "tap2")] == [None, None, None]

    out = up(host, hooks)
    pid = host.vm.pid
    assert f"vlan.0: br0: set up with uplink eth0; re-plugged tap0 (pid {pid}), tap1 " \
           f"(pid {pid})\n" in out, out
    assert "vlan.1: br1: set up; re-plugged tap2" in out, out
    assert host.ports("br0") == ["eth0", "tap0", "tap1"] and host.ports("br1") == ["tap2"]
    tap2 = host.link("tap2")
    assert tap2["mtu"] == 1400 and "UP" in tap2["flags"]
    assert up(host, hooks) == "vlan.0: br0: already up with uplink eth0\n" \
                              "vlan.1: br1: already up\n"  # nothing left to re-plug


def test_up_only_replugs_the_segments_it_is_given(host, hooks):
    host.ip("link", "del", "br0")
    host.ip("link", "set", "tap2", "nomaster")
    out = up(host, hooks, "1")
    assert "br0" not in out and "re-plugged tap2" in out
    assert host.link("br0") is None and host.ports("br1") == ["tap2"]
    assert host.master_of("tap0") is None


def test_up_drops_records_of_gone_taps_and_leaves_moved_ones(host, hooks):
    host.ip("link", "del", "br0")
    host.bridge("brother")
    host.ip("link", "set", "tap1", "master", "brother")  # an admin's choice: left alone
    host.release(host.vm)  # the VM stopped without ifdown: its TAPs are gone
    replacement = host.hold_taps("tap0")  # a new TAP of the same name is another TAP
    assert host.link("tap0") is not None
    out = up(host, hooks)
    assert "re-plugged" not in out, out
    assert host.master_of("tap0") is None and host.master_of("tap1") is None
    assert host.records() == {}
    host.release(replacement)


def test_up_leaves_a_tap_moved_to_another_bridge(host, hooks):
    host.ip("link", "del", "br0")
    host.bridge("brother")
    host.ip("link", "set", "tap1", "master", "brother")
    out = up(host, hooks)
    assert "re-plugged tap0" in out and "tap1" not in out, out
    assert host.master_of("tap1") == "brother" and host.master_of("tap0") == "br0"
    assert "tap1" in host.records()


@pytest.mark.parametrize("trouble", ["read-only", "full"])
def test_a_record_that_cannot_be_written_never_fails_ifup(netns, hooks, trouble):
    """/run read-only or full: ifup attaches as ever, quietly (one log note)."""
    netns.veth("eth0", "lan0")
    hooks.write_config(CONFIG)
    sh(CLI, "install", "--dir", hooks.dir, "--config", hooks.config)
    netns.hold_taps("tap0")
    os.makedirs(RECORDS, exist_ok=True)
    mount = "mount -t tmpfs -o ro,size=4k qih {d}" if trouble == "read-only" else \
        "mount -t tmpfs -o size=4k,nr_inodes=2 qih {d} && " \
        "(cat /dev/zero > {d}/fill 2>/dev/null; true)"  # no block and no inode left
    script = f"{mount.format(d=RECORDS)} && exec ip netns exec {netns.name} " \
             f"{hooks.dir}/ifup-br0 tap0"
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          env=hooks.env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert netns.ports("br0") == ["eth0", "tap0"]
    assert netns.records() == {}  # the host's /run saw nothing either
    assert any("could not record the attachment" in line for line in hooks.log_lines())


def test_status_and_check_show_a_detached_tap(host, hooks):
    host.ip("link", "del", "br1")
    text = hooks.cli(host, "status").stdout
    assert f"  tap tap2: detached from br1, python pid {host.vm.pid} (no -name); " \
           f"run 'qemu-ifhooks up 1'\n" in text, text
    report = json.loads(hooks.cli(host, "status", "--json").stdout)
    segment = [s for s in report["segments"] if s["vlan"] == 1][0]
    assert [(d["name"], d["fix"]) for d in segment["detached"]] == \
        [("tap2", "qemu-ifhooks up 1")]
    assert segment["detached"][0]["processes"][0]["pid"] == host.vm.pid
    check = hooks.cli(host, "check", "--json", "--hook-dir", str(hooks.dir))
    found = [f for f in json.loads(check.stdout)["findings"] if f["check"] == "tap.detached"]
    assert [(f["severity"], f["subject"], f["fix"]) for f in found] == \
        [("warn", "tap2", "qemu-ifhooks up 1")]
    up(host, hooks)
    report = json.loads(hooks.cli(host, "status", "--json").stdout)
    assert all(s["detached"] == [] for s in report["segments"])


# --- the proof with real guests ---------------------------------------------------------

GUESTS = {  # name: [(vlan, bridge, guest address, peer on the LAN)]
    "g1": [(0, "br0", "192.0.2.11/24", "192.0.2.1"), (1, "br1", "198.51.100.11/24",
                                                       "198.51.100.1")],
    "g2": [(0, "br0", "192.0.2.12/24", "192.0.2.1")],
    "g3": [(1, "br1", "198.51.100.13/24", "198.51.100.1")],
}
SEED_TWO = CONFIG.replace("mtu = 1400\n", 'uplink = "eth1"\n')


def watched(console, nic: int, peer: str) -> list:
    """The guest's ping results towards `peer` from its NIC number `nic`, as they changed."""
    return [line.split()[3] for line in qemutools.console_lines(console)
            if line.startswith(f"QIH-WATCH eth{nic} {peer} ")]


def wait_all(consoles, count: int, result: str, timeout: float) -> None:
    """Every guest NIC has seen `count` changes, the last one to `result`."""
    def done():
        return all(len(w) >= count and w[-1] == result
                   for name, console in consoles.items()
                   for w in [watched(console, i, nic[3]) for i, nic in enumerate(GUESTS[name])])
    assert wait_for(done, timeout), {name: qemutools.console_lines(c)
                                     for name, c in consoles.items()}


def test_three_running_guests_get_their_lans_back(make_netns, hooks, request, tmp_path):
    """Three booted guests on two segments: after `down --force` and `up`, and after
    `ip link del` of the bridges and `up`, every guest pings its LAN again, unrestarted."""
    require_guest()
    host, _ = qemutools.make_lab(make_netns, "qih-re")
    hooks.write_config(SEED_TWO)
    sh(CLI, "install", "--dir", hooks.dir, "--config", hooks.config)
    consoles, vms = {}, {}
    for name, nics in GUESTS.items():
        consoles[name] = tmp_path / f"{name}.log"
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "192", "-nodefaults",
                "-display", "none", "-no-reboot", "-name", name, "-monitor", "stdio",
                "-serial", f"file:{consoles[name]}", "-kernel", str(GUEST_DIR / "vmlinuz"),
                "-initrd", str(GUEST_DIR / "initrd.img"), "-append",
                "console=ttyS0 panic=-1 quiet qih.wait=90 qih.watch=900 qih.net="
                + ";".join(f"{address},{peer}" for _, _, address, peer in nics)]
        for vlan, bridge, _, _ in nics:
            argv += ["-netdev", f"tap,id=n{vlan},ifname={name}-{vlan},"
                                f"script={hooks.dir}/ifup-{bridge},"
                                f"downscript={hooks.dir}/ifdown-{bridge}",
                     "-device", f"virtio-net-pci,netdev=n{vlan}"]
        vms[name] = qemutools.start(host, argv, request, base=[])
    taps = {f"{name}-{vlan}": bridge for name, nics in GUESTS.items()
            for vlan, bridge, _, _ in nics}
    wait_all(consoles, 1, "OK", 400)  # booted, and each NIC reaches its LAN
    assert host.ports("br0") == ["eth0", "g1-0", "g2-0"]
    assert host.ports("br1") == ["eth1", "g1-1", "g3-1"]

    for round, cut in enumerate((["down", "--force"], None)):
        if cut:
            assert hooks.cli(host, *cut).returncode == 0
        else:
            host.ip("link", "del", "br0")
            host.ip("link", "del", "br1")
        wait_all(consoles, 2 * round + 2, "FAIL", 120)  # the guests see the cut
        out = up(host, hooks)
        for tap in taps:
            assert f" {tap} (pid " in out, out
        assert host.ports("br0") == ["eth0", "g1-0", "g2-0"]
        assert host.ports("br1") == ["eth1", "g1-1", "g3-1"]
        wait_all(consoles, 2 * round + 3, "OK", 120)  # and their LANs again

    for name, qemu in vms.items():
        _, err = qemu.communicate("quit\n", timeout=120)
        assert qemu.returncode == 0, err
    assert host.records() == {}  # each downscript dropped its TAP's record
    assert all(host.link(tap) is None for tap in taps)
