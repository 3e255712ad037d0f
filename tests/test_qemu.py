"""Real QEMU runs the installed hooks: without a guest (-S), and with a booted guest that
pings through each bridge to the far side of its uplink (the seed's scenario)."""

from __future__ import annotations

import os
import pwd

import pytest

import qemutools
from conftest import CLI, GUEST_DIR, SEED_CONFIG, require_guest, require_qemu, sh
from qemutools import wait_for

NICS = [  # vlan, tap, bridge, mac, guest address, peer on the LAN
    (0, "vmtap0", "br0", "00:16:3e:00:01:01", "192.0.2.10/24", "192.0.2.1"),
    (1, "vmtap1", "br1", "00:16:3e:00:01:02", "198.51.100.10/24", "198.51.100.1"),
]


@pytest.fixture
def lab(make_netns, hooks):
    """A VM host namespace with uplinks eth0/eth1 to a LAN namespace holding the peers,
    and the hooks installed by `qemu-ifhooks install`."""
    host, lan = qemutools.make_lab(make_netns)
    hooks.write_config(SEED_CONFIG)
    sh(CLI, "install", "--dir", hooks.dir, env=hooks.env())
    return host, lan, hooks


def start(host, hooks, extra, request):
    return qemutools.start(host, qemu_argv(hooks, extra), request, env=hooks.env(), base=[])


def qemu_argv(hooks, extra):
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults",
            "-display", "none", "-no-reboot", "-name", "hooktest", "-monitor", "stdio"]
    for vlan, tap, bridge, mac, _, _ in NICS:
        argv += ["-netdev", f"tap,id=n{vlan},ifname={tap},script={hooks.dir}/ifup-{bridge},"
                            f"downscript={hooks.dir}/ifdown-{bridge}",
                 "-device", f"virtio-net-pci,netdev=n{vlan},mac={mac}"]
    return argv + extra


def test_qemu_runs_the_hooks_for_two_nics_and_the_downscripts_on_quit(lab, request):
    require_qemu()
    host, _, hooks = lab
    qemu = start(host, hooks, ["-S"], request)
    wanted = {tap: bridge for _, tap, bridge, _, _, _ in NICS}
    assert wait_for(lambda: all(host.master_of(t) == b for t, b in wanted.items())), \
        ([host.master_of(t) for t in wanted], qemu.poll())
    assert host.master_of("eth0") == "br0" and host.master_of("eth1") == "br1"

    out, err = qemu.communicate("quit\n", timeout=60)
    assert qemu.returncode == 0, err
    assert "network script" not in err
    for tap in wanted:
        assert host.link(tap) is None  # QEMU closed it after the downscript
    downs = [l for l in hooks.log_lines() if "action=ifdown" in l and "result=ok" in l]
    assert sorted(l.split("tap=")[1].split()[0] for l in downs) == sorted(wanted)


def test_qemu_refuses_to_start_when_the_upscript_fails(lab, request):
    require_qemu()
    host, _, hooks = lab
    host.run("ethtool", "-K", "eth0", "gro", "off", check=True)
    qemu = start(host, hooks, ["-S"], request)
    _, err = qemu.communicate("quit\n", timeout=60)
    assert qemu.returncode != 0
    assert "uplink eth0 has GRO disabled" in err  # QEMU passes our one line through
    assert "network script" in err and "failed with status" in err
    assert host.link("br0") is None


def uids_of(pid: int) -> set:
    with open(f"/proc/{pid}/status") as status:
        line = next(l for l in status if l.startswith("Uid:"))
    return {int(uid) for uid in line.split()[1:]}


def test_downscripts_after_qemu_dropped_privileges(lab, request):
    """QEMU runs the upscripts as root, then becomes nobody (-run-with user= or -runas,
    whichever this QEMU has); on quit the downscripts run as nobody: no CAP_NET_ADMIN,
    a logged note, exit 0 (QEMU goes on), and the kernel detaches each TAP when QEMU
    closes it."""
    require_qemu()
    host, _, hooks = lab
    hooks.log.touch()
    os.chmod(hooks.log, 0o666)  # the downscripts, as nobody, log there too
    nobody = pwd.getpwnam("nobody").pw_uid
    qemu = start(host, hooks, ["-S"] + qemutools.privilege_drop_args("nobody"), request)
    wanted = {tap: bridge for _, tap, bridge, _, _, _ in NICS}
    assert wait_for(lambda: all(host.master_of(t) == b for t, b in wanted.items())), \
        ([host.master_of(t) for t in wanted], qemu.poll())
    # `ip netns exec` execs QEMU: the Popen's PID is QEMU's; the kernel says who it is.
    assert wait_for(lambda: uids_of(qemu.pid) == {nobody}), uids_of(qemu.pid)

    out, err = qemu.communicate("quit\n", timeout=60)
    assert qemu.returncode == 0, err
    assert "network script" not in err and "qemu-ifhooks" not in err, err
    for tap in wanted:
        assert host.link(tap) is None
    notes = [l for l in hooks.log_lines() if "no CAP_NET_ADMIN" in l]
    assert sorted(tap for tap in wanted if any(tap in l for l in notes)) == sorted(wanted), \
        hooks.log_lines()
    assert host.master_of("eth0") == "br0" and host.master_of("eth1") == "br1"


def test_booted_guest_pings_through_each_bridge(lab, request, tmp_path):
    require_guest()
    host, _, hooks = lab
    console = tmp_path / "console.log"
    nets = ";".join(f"{address},{peer}" for _, _, _, _, address, peer in NICS)
    qemu = start(host, hooks, [
        "-serial", f"file:{console}", "-kernel", str(GUEST_DIR / "vmlinuz"),
        "-initrd", str(GUEST_DIR / "initrd.img"),
        "-append", f"console=ttyS0 panic=-1 quiet qih.net={nets} qih.wait=20"], request)
    _, err = qemu.communicate(timeout=180)  # the guest powers off by itself
    lines = qemutools.console_lines(console)
    assert lines == ["QIH-PING eth0 192.0.2.1 OK", "QIH-PING eth1 198.51.100.1 OK",
                     "QIH-DONE"], (lines, err)
    downs = [l for l in hooks.log_lines() if "action=ifdown" in l and "result=ok" in l]
    assert len(downs) == 2
