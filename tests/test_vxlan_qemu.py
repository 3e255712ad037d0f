"""Real QEMU guests on a segment that spans three hypervisors (namespaces on an underlay
switch), attached by the hooks: they ping each other with full-size frames, with static
remotes and with EVPN through FRR; and a guest moves from host 1 to host 2 with QEMU's
own live migration while a guest on host 3 keeps pinging it."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

import qemutools
from conftest import GUEST_DIR, require_guest
from vxlanlab import BRIDGE, Fabric, poll, start_fabric_frr, wait_evpn

MIGRATION_PORT = 4444
WATCH_COUNT = 250  # pings at 5 a second from host 3's guest during the move
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b[=>]")


class Monitor:
    """QEMU's human monitor on a Unix socket: one command, its answer."""

    def __init__(self, path: Path, timeout: float = 60):
        assert qemutools.wait_for(path.exists, timeout), f"no monitor socket {path}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._until_prompt()

    def _until_prompt(self) -> str:
        data = b""
        while not data.endswith(b"(qemu) "):
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return _ESCAPES.sub("", data.decode(errors="replace"))

    def command(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\n")
        return self._until_prompt()

    def quit(self) -> None:
        """`quit`, and wait until QEMU closes the monitor (it runs the downscript first)."""
        self.sock.sendall(b"quit\n")
        try:
            while self.sock.recv(4096):
                pass
        except OSError:
            pass
        self.sock.close()


class Guest:
    def __init__(self, host, name: str, index: int, kernel_args: str, request,
                 incoming: bool = False):
        self.host, self.name = host, name
        self.console = host.hooks.dir.parent / f"{name}-{host.index}.console"
        self.monitor_path = host.hooks.dir.parent / f"{name}-{host.index}.monitor"
        self.mac = f"52:54:00:00:07:{index:02x}"
        self.tap = f"vmtap{index}"
        hooks = host.hooks
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "128", "-nodefaults",
                "-display", "none", "-no-reboot", "-name", name,
                "-monitor", f"unix:{self.monitor_path},server=on,wait=off",
                "-netdev", f"tap,id=n0,ifname={self.tap},script={hooks.entry('ifup-' + BRIDGE)},"
                           f"downscript={hooks.entry('ifdown-' + BRIDGE)}",
                "-device", f"virtio-net-pci,netdev=n0,mac={self.mac}",
                "-serial", f"file:{self.console}", "-kernel", str(GUEST_DIR / "vmlinuz"),
                "-initrd", str(GUEST_DIR / "initrd.img"),
                "-append", f"console=ttyS0 panic=-1 quiet {kernel_args}"]
        if incoming:
            argv += ["-incoming", f"tcp:{host.address}:{MIGRATION_PORT}"]
        self.qemu = qemutools.start(host.ns, argv, request, env=hooks.env(), base=[])
        self.monitor = Monitor(self.monitor_path)

    def lines(self, prefix: str = "QIH-") -> list:
        if not self.console.exists():
            return []
        return [l.strip() for l in self.console.read_text(errors="replace").splitlines()
                if l.startswith(prefix)]

    def wait_line(self, text: str, timeout: float = 240) -> None:
        assert poll(lambda: any(l.startswith(text) for l in self.lines()) or
                    self.qemu.poll() is not None, timeout), (self.name, self.lines())
        assert any(l.startswith(text) for l in self.lines()), (self.name, self.lines(),
                                                                 self.qemu.poll())

    def quit(self) -> None:
        self.monitor.quit()
        self.qemu.wait(timeout=60)


def guest_args(me: str, peer: str, extra: str = "") -> str:
    return f"qih.net={me}/24,{peer} qih.wait=200 qih.stay=1 {extra}".strip()


@pytest.fixture
def fabric(make_netns):
    require_guest()
    made = Fabric(make_netns)
    yield made
    made.cleanup()


def build(fabric: Fabric, mode: str) -> None:
    fabric.configure(mode)
    if mode == "evpn":
        fabric.up()  # zebra learns the VNI from the VXLAN link on its bridge
        start_fabric_frr(fabric)
        wait_evpn(fabric)
    # With static remotes the first VM's ifup builds everything.


def attached(host, tap: str) -> bool:
    link = host.ns.link(tap)
    return link is not None and link.get("master") == BRIDGE


@pytest.mark.parametrize("mode", ["static", "evpn"])
def test_guests_on_three_hosts_ping_each_other_with_full_size_frames(fabric, mode, request):
    build(fabric, mode)
    addresses = {i: f"192.0.2.{10 + i}" for i in (1, 2, 3)}
    guests = {}
    for host in fabric.hosts:
        peer = addresses[host.index % 3 + 1]  # 1 -> 2 -> 3 -> 1
        guests[host.index] = Guest(host, f"g{host.index}", host.index,
                                   guest_args(addresses[host.index], peer, "qih.size=1472"),
                                   request)
    for i, guest in guests.items():
        guest.wait_line("QIH-DONE")
        peer = addresses[i % 3 + 1]
        assert f"QIH-PING eth0 {peer} OK" in guest.lines(), guest.lines()
        assert attached(guest.host, guest.tap)
    if mode == "evpn":  # guest 1's MAC is announced to the others, then withdrawn
        mac = guests[1].mac
        for host in fabric.hosts[1:]:
            assert poll(lambda: "extern_learn" in host.remote_macs().get(mac, {}).get("flags", []),
                        30), host.fdb()
        guests[1].quit()
        logged = [l for l in fabric.hosts[0].hooks.log_lines() if "action=ifdown" in l]
        assert logged and "result=ok" in logged[-1], logged
        for host in fabric.hosts[1:]:
            assert poll(lambda: mac not in host.remote_macs(), 30), host.fdb()
    for guest in guests.values():
        if guest.qemu.poll() is None:
            guest.quit()


@pytest.mark.parametrize("mode", ["static", "evpn"])
def test_live_migration_between_hosts_keeps_the_guest_reachable(fabric, mode, request):
    build(fabric, mode)
    h1, h2, h3 = fabric.hosts
    moving, watcher = "192.0.2.21", "192.0.2.23"
    source = Guest(h1, "mover", 21, guest_args(moving, watcher), request)
    target = Guest(h2, "mover", 21, guest_args(moving, watcher), request, incoming=True)
    assert poll(lambda: attached(h2, target.tap), 60)  # B's hook ran at QEMU's start
    watch = Guest(h3, "watcher", 23,
                  guest_args(watcher, moving, f"qih.count={moving},{WATCH_COUNT}"), request)
    source.wait_line("QIH-DONE")
    watch.wait_line("QIH-COUNT seq=")  # reaching the guest on host 1

    started = time.monotonic()
    answer = source.monitor.command(f"migrate -d tcp:{h2.address}:{MIGRATION_PORT}")
    assert "error" not in answer.lower(), answer
    assert poll(lambda: "Migration status: completed" in source.monitor.command("info migrate"),
                120, step=0.2), source.monitor.command("info migrate")
    migrated_in = time.monotonic() - started
    seen_at_switch = len(watch.lines("QIH-COUNT seq="))
    source.quit()  # A's downscript detaches the TAP there
    assert h1.ns.link(source.tap) is None
    downs = [l for l in h1.hooks.log_lines() if "action=ifdown" in l]
    assert downs and "result=ok" in downs[-1], downs
    assert attached(h2, target.tap)

    watch.wait_line("QIH-COUNTED", timeout=WATCH_COUNT * 0.2 + 120)
    sent, received = map(int, watch.lines("QIH-COUNTED")[-1].split()[1:3])
    seqs = [int(l.split("=")[1]) for l in watch.lines("QIH-COUNT seq=")]
    assert sent == WATCH_COUNT
    # After the switch the guest, now on host 2, answers host 3's guest again.
    assert max(seqs) >= WATCH_COUNT - 5 and len(seqs) > seen_at_switch, (seqs, seen_at_switch)
    lost = sent - received
    print(f"\nmigration {mode}: {migrated_in:.1f} s to complete; host 3's guest lost "
          f"{lost} of {sent} pings at 0.2 s ({lost * 0.2:.1f} s)")
    assert lost <= 50, f"{lost} pings lost"
    for guest in (target, watch):
        guest.quit()
    assert h2.ns.link(target.tap) is None
