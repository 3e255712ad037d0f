"""Unprivileged QEMU on a bridge: the bridge helper and the root broker behind it, with
real QEMU running as nobody in a test namespace, and a fuzzed broker."""

from __future__ import annotations

import array
import json
import os
import pwd
import random
import socket
import subprocess
import time

import pytest

import qemutools
from brokertools import CONFIG, Broker
from conftest import BIN, CLI, GUEST_DIR, assert_one_line_error, require_guest, require_qemu
from qemutools import wait_for

HELPER = BIN / "qemu-ifhooks-bridge-helper"
MAC = "00:16:3e:00:02:01"
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def lab(make_netns, hooks, request):
    host, lan = qemutools.make_lab(make_netns, "qih-brk")
    hooks.write_config(CONFIG)
    hooks.log.touch()
    return host, lan, hooks, Broker(host, hooks, request)


def taps(host) -> list:
    return [l["ifname"] for l in host.links()
            if l.get("linkinfo", {}).get("info_kind") == "tun"]


def tap_owner(host, tap: str) -> int:
    return int(host.run("cat", f"/sys/class/net/{tap}/owner", check=True).stdout)


def qemu_as_nobody(host, hooks, broker, br: str, extra, request):
    argv = AS_NOBODY + ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults",
                        "-display", "none", "-no-reboot", "-monitor", "stdio",
                        "-netdev", f"bridge,id=n0,br={br},helper={HELPER}",
                        "-device", f"virtio-net-pci,netdev=n0,mac={MAC}"] + extra
    return qemutools.start(host, argv, request, env=hooks.env(QEMU_IFHOOKS_BROKER=broker.socket),
                           base=[])


def test_qemu_as_nobody_gets_a_tap_on_the_bridge_owned_by_nobody(lab, request):
    require_qemu()
    host, _, hooks, broker = lab
    qemu = qemu_as_nobody(host, hooks, broker, "br0", ["-S"], request)
    assert wait_for(lambda: len(host.ports("br0")) == 2 or qemu.poll() is not None), \
        (host.ports("br0"), qemu.poll())
    assert qemu.poll() is None, qemu.communicate()
    (tap,) = taps(host)
    assert host.ports("br0") == sorted(["eth0", tap])
    assert tap_owner(host, tap) == pwd.getpwnam("nobody").pw_uid
    assert host.link(tap)["linkinfo"]["info_data"].get("vnet_hdr") in (True, None)
    granted = [l for l in hooks.log_lines() if "broker: granted" in l]
    assert len(granted) == 1 and f"uid={pwd.getpwnam('nobody').pw_uid}" in granted[0]
    assert tap in granted[0] and "vlan.0" in granted[0]
    status = json.loads(hooks.cli(host, "status", "--json").stdout)
    (port,) = [p for p in status["segments"][0]["ports"] if p["name"] == tap]
    assert port["owner_uid"] == pwd.getpwnam("nobody").pw_uid
    assert port["processes"] and port["processes"][0]["pid"] == qemu.pid, port
    text = hooks.cli(host, "status").stdout
    assert f"owner uid {pwd.getpwnam('nobody').pw_uid} (bridge helper)" in text, text

    assert tap in host.records()
    _, err = qemu.communicate("quit\n", timeout=60)
    assert qemu.returncode == 0, err
    assert wait_for(lambda: taps(host) == []), taps(host)  # the TAP went with QEMU
    assert host.ports("br0") == ["eth0"]
    assert wait_for(lambda: tap not in host.records(), 10)  # swept when it went


def boot_as_nobody(lab, request, br: str, net: str) -> list:
    """A guest of a QEMU running as nobody, on `br` through the helper; what it printed
    after pinging as `net` says (tools/guest-init.sh)."""
    require_guest()
    host, _, hooks, broker = lab
    console = hooks.dir.parent / "console.log"  # QEMU runs as nobody: not under tmp_path
    console.touch()
    os.chmod(console, 0o666)
    qemu = qemu_as_nobody(host, hooks, broker, br, [
        "-serial", f"file:{console}", "-kernel", str(GUEST_DIR / "vmlinuz"),
        "-initrd", str(GUEST_DIR / "initrd.img"),
        "-append", f"console=ttyS0 panic=-1 quiet qih.net={net} qih.wait=20"], request)
    _, err = qemu.communicate(timeout=180)  # the guest powers off by itself
    return qemutools.console_lines(console), err


def test_booted_guest_of_an_unprivileged_qemu_pings_the_lan(lab, request):
    lines, err = boot_as_nobody(lab, request, "vlan0", "192.0.2.10/24,192.0.2.1")
    assert lines == ["QIH-PING eth0 192.0.2.1 OK", "QIH-DONE"], err


@pytest.mark.parametrize("net, expected", [
    ("192.0.2.10/24,192.0.2.1", "OK"),
    ("192.0.2.10/24,192.0.2.1,52:54:00:66:66:66", "FAIL"),  # it changes its MAC
], ids=["own-mac", "changed-mac"])
def test_a_guest_behind_the_helper_cannot_send_as_another_mac(lab, request, net, expected):
    """port_security = "mac" on a helper's TAP: the MAC comes from the -device of the
    -netdev bridge in QEMU's command line, and frames from any other are dropped."""
    _, _, hooks, _ = lab
    hooks.write_config(CONFIG.replace('allow_users = ["nobody"]\n',
                                      'allow_users = ["nobody"]\nport_security = "mac"\n'))
    lines, err = boot_as_nobody(lab, request, "br0", net)
    assert lines == [f"QIH-PING eth0 192.0.2.1 {expected}", "QIH-DONE"], err
    granted = [l for l in hooks.log_lines() if "broker: granted" in l]
    assert len(granted) == 1, hooks.log_lines()


def test_a_user_not_allowed_gets_bridge_helper_failed_and_no_tap(lab, request):
    require_qemu()
    host, _, hooks, broker = lab
    qemu = qemu_as_nobody(host, hooks, broker, "br1", ["-S"], request)
    _, err = qemu.communicate("quit\n", timeout=60)
    assert qemu.returncode == 1, err
    assert "bridge helper failed" in err
    ours = [l for l in err.splitlines() if l.startswith("qemu-ifhooks: ")]
    assert len(ours) == 1 and "user nobody" in ours[0] and "vlan.1" in ours[0], err
    assert taps(host) == [] and host.link("br1") is None
    refused = [l for l in hooks.log_lines() if "broker: refused" in l]
    assert len(refused) == 1 and f"uid={pwd.getpwnam('nobody').pw_uid}" in refused[0]


def test_helper_says_in_one_line_when_the_broker_is_not_running(lab):
    host, _, hooks, broker = lab
    broker.stop()
    assert not os.path.exists(broker.socket)  # removed on SIGTERM
    done = host.run(*AS_NOBODY, str(HELPER), "--use-vnet", "--fd=0", "--br=br0",
                    env=hooks.env(QEMU_IFHOOKS_BROKER=broker.socket))
    assert_one_line_error(done, 69, "no qemu-ifhooks broker listening at", broker.socket)


def test_helper_rejects_bad_arguments_in_one_line(lab):
    host, _, hooks, broker = lab
    for argv in (["--br=br0"], ["--fd=x", "--br=br0"], ["--fd=3", "--br=" + "b" * 40],
                 ["--fd=3", "--br=br0", "--what"]):
        done = host.run(str(HELPER), *argv, env=hooks.env(QEMU_IFHOOKS_BROKER=broker.socket))
        assert_one_line_error(done, 64, "bridge-helper: ")


def ask(path: str, data: bytes):
    """One raw request as root: (reply line, received fds)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(data)
        reply, ancillary, _, _ = sock.recvmsg(2048, socket.CMSG_SPACE(16))
    fds = [fd for _, _, payload in ancillary for fd in array.array("i", payload)]
    return reply.decode(), fds


def test_broker_survives_a_thousand_malformed_requests_and_leaks_nothing(lab):
    host, _, hooks, broker = lab
    # A first grant builds br0 and warms the service up; its TAP goes with the fd.
    reply, fds = ask(broker.socket, b"br0 vnet\n")
    assert reply == "ok\n" and len(fds) == 1
    os.close(fds[0])
    assert wait_for(lambda: taps(host) == [])
    time.sleep(1)  # the worker thread closes its connection after the client has its fd
    links, fds_before, rss_before = host.snapshot(), broker.fds(), broker.rss_kb()

    rng = random.Random(16)
    fixed = [b"", b"\n", b"br0", b"nosuch\n", b"vlan99\n", b"vlan\n", b"br0 extra\n",
             b"br0 vnet vnet\n", b"br0\nbr0\n", b"../../x\n", b"br0 vnet", b"\xff\xfe\n",
             b"b" * 200 + b"\n", b"x" * 63 + b"\n", b"vlan00\n", b"vlan1\x00\n", b" \n",
             b"br0  vnet\n", b"vlan4095\n", "brü\n".encode()]
    sent = 0
    for round_ in range(1100):
        data = fixed[round_ % len(fixed)] if round_ < 200 else \
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(broker.socket)
            if round_ % 7 == 0:
                pass  # connect and hang up at once
            elif round_ % 3 == 0:
                sock.sendall(data)  # then hang up mid-request
            else:
                try:
                    sock.sendall(data)
                    if b"\n" not in data:
                        sock.shutdown(socket.SHUT_WR)  # a truncated request
                    sock.recvmsg(2048, socket.CMSG_SPACE(16))
                except OSError:
                    pass  # the service may have answered and closed first
        sent += 1
    assert sent >= 1000
    # A client that stalls is cut off after the read timeout.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(broker.socket)
        sock.sendall(b"br")
        sock.settimeout(10)
        assert sock.recv(2048).startswith(b"error 64 ")
    assert broker.process.poll() is None

    reply, fds = ask(broker.socket, b"br0\n")
    assert reply == "ok\n" and len(fds) == 1
    (tap,) = taps(host)
    assert host.master_of(tap) == "br0"
    os.close(fds[0])
    assert wait_for(lambda: taps(host) == [])
    assert host.snapshot() == links
    assert wait_for(lambda: broker.fds() == fds_before, 10), (fds_before, broker.fds())
    assert broker.rss_kb() < rss_before + 4096, (rss_before, broker.rss_kb())
    refused = [l for l in hooks.log_lines() if "broker: refused uid=0 pid=" in l]
    assert len(refused) >= 1000


def test_broker_refuses_unknown_and_overlong_names_and_changes_nothing(lab):
    host, _, hooks, broker = lab
    links = host.snapshot()
    for data, fragment in ((b"nosuch\n", "no segment uses bridge nosuch"),
                           (b"vlan7\n", "no segment vlan.7"),
                           (b"b" * 40 + b"\n", "invalid bridge name")):
        reply, fds = ask(broker.socket, data)
        assert reply.startswith("error 64 ") and fragment in reply and fds == [], reply
    assert host.snapshot() == links


def broker_findings(host, hooks, socket_path):
    done = hooks.cli(host, "check", "--json", "--hook-dir", str(hooks.dir),
                     QEMU_IFHOOKS_BROKER=socket_path)
    assert "Traceback" not in done.stderr, done.stderr
    return [(f["severity"], f["check"], f["subject"], f["message"])
            for f in json.loads(done.stdout)["findings"] if f["check"].startswith("broker.")]


def test_check_reports_the_socket_and_who_may_use_which_segment(lab):
    host, _, hooks, broker = lab
    found = broker_findings(host, hooks, broker.socket)
    assert found == [
        ("ok", "broker.socket", broker.socket, "a broker listens (bridge helper usable)"),
        ("ok", "broker.access", "vlan.0", "bridge br0 open to users nobody (and root)"),
        ("ok", "broker.access", "vlan.1",
         "bridge br1 open to groups qih-no-such-group (and root)"),
        ("warn", "broker.access", "vlan.1",
         "allow_groups names group qih-no-such-group, which does not exist"),
    ], found
    broker.stop()
    assert broker_findings(host, hooks, broker.socket)[0][:2] == ("warn", "broker.socket")


def test_port_security_takes_the_mac_of_the_bridge_nic_from_qemus_command_line(lab, request):
    require_qemu()
    host, _, hooks, broker = lab
    hooks.write_config(CONFIG.replace('allow_users = ["nobody"]\n',
                                      'allow_users = ["nobody"]\nport_security = "mac"\n'))
    qemu = qemu_as_nobody(host, hooks, broker, "br0", ["-S"], request)
    assert wait_for(lambda: len(host.ports("br0")) == 2 or qemu.poll() is not None)
    assert qemu.poll() is None, qemu.communicate()
    (tap,) = taps(host)
    rules = host.run("nft", "list", "ruleset", check=True).stdout
    assert f'"{tap}"' in rules and MAC in rules, rules
    status = json.loads(hooks.cli(host, "status", "--json").stdout)
    (port,) = [p for p in status["segments"][0]["ports"] if p["name"] == tap]
    assert port["port_security"] == "mac"
    qemu.communicate("quit\n", timeout=60)
    # No downscript runs for a helper's TAP: the broker sweeps its rules when the kernel
    # announces the TAP's removal.
    assert wait_for(lambda: f'"{tap}"' not in host.run("nft", "list", "ruleset").stdout, 10)
    assert any(f"broker: swept {tap}" in l for l in hooks.log_lines()), hooks.log_lines()


def test_bridge_nic_mac_finds_the_one_nic_on_the_bridge():
    from qemu_ifhooks.portsecurity import bridge_nic_mac

    args = ["qemu", "-netdev", "bridge,id=a,br=br0,helper=/h", "-device",
            "virtio-net-pci,netdev=a,mac=52:54:00:00:00:01", "-netdev", "tap,id=b,ifname=t",
            "-device", "e1000,netdev=b,mac=52:54:00:00:00:02"]
    assert bridge_nic_mac(args, "br0") == "52:54:00:00:00:01"
    assert bridge_nic_mac(args, "br1") is None
    assert bridge_nic_mac(["qemu", "-nic", "bridge,mac=52:54:00:00:00:03"], "br0") == \
        "52:54:00:00:00:03"  # br= defaults to br0, as in QEMU
    two = args + ["-nic", "bridge,br=br0,mac=52:54:00:00:00:04"]
    assert bridge_nic_mac(two, "br0") is None  # which NIC asked cannot be told


def test_broker_takes_the_listening_socket_from_socket_activation(make_netns, hooks, request):
    """What qemu-ifhooks-broker.socket does, with systemd's own launcher: the broker
    gets the listening socket as fd 3 (LISTEN_FDS=1, LISTEN_PID its own)."""
    host, _ = qemutools.make_lab(make_netns, "qih-sact")
    hooks.write_config(CONFIG)
    path = str(hooks.dir.parent / "activated.sock")
    env = hooks.env()
    launcher = host.popen("systemd-socket-activate", "-l", path,
                          "-E", f"QEMU_IFHOOKS_CONFIG={env['QEMU_IFHOOKS_CONFIG']}",
                          "-E", f"QEMU_IFHOOKS_LOG={env['QEMU_IFHOOKS_LOG']}",
                          CLI, "broker", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)

    def stop():
        if launcher.poll() is None:
            launcher.terminate()
        launcher.communicate(timeout=15)
    request.addfinalizer(stop)
    assert wait_for(lambda: os.path.exists(path) or launcher.poll() is not None, 15)
    reply, fds = ask(path, b"vlan0 vnet\n")
    assert reply == "ok\n" and len(fds) == 1, (reply, launcher.poll())
    (tap,) = taps(host)
    assert host.master_of(tap) == "br0"
    os.close(fds[0])
    assert wait_for(lambda: taps(host) == [])
    assert any("broker: listening on the socket systemd passed" in l for l in hooks.log_lines())


def test_one_users_flood_of_idle_connections_does_not_lock_others_out(lab):
    host, _, hooks, broker = lab
    idle = []
    for _ in range(20):  # root's idle connections: 8 are served, the rest refused at once
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(broker.socket)
        idle.append(sock)
    try:
        refused = 0
        for sock in idle[8:]:
            sock.settimeout(10)
            refused += sock.recv(200).startswith(b"error 75 too many concurrent requests")
        assert refused == 12
        # Meanwhile nobody's request is granted at once.
        client = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect(%r); "
                  "s.sendall(b'br0 vnet\\n'); print(s.recvmsg(100, 64)[0].decode(), end='')"
                  % broker.socket)
        done = host.run(*AS_NOBODY, "/usr/bin/python3", "-c", client, cwd="/", timeout=10)
        assert done.stdout == "ok\n", (done.stdout, done.stderr)
    finally:
        for sock in idle:
            sock.close()
    assert wait_for(lambda: taps(host) == [])


def test_the_socket_appears_listening_and_a_stop_at_once_removes_it(lab):
    """A client that finds the socket path the moment it appears is served, never
    refused (the socket listens before it gets its name); a broker stopped the moment
    its socket appears still removes it. Each start is raced as tightly as a loop can."""
    host, _, hooks, broker = lab
    broker.stop()
    for attempt in range(12):
        path = str(hooks.dir.parent / f"race{attempt}.sock")
        process = host.popen(CLI, "broker", "--socket", path, env=hooks.env(),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 15
            while not os.path.exists(path):
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "broker did not start"
            if attempt % 2:
                process.terminate()
            else:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.connect(path)  # ECONNREFUSED if it were not listening yet
                process.terminate()
            _, err = process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert (process.returncode, err) == (0, ""), err
        assert not os.path.exists(path)
        assert [name for name in os.listdir(hooks.dir.parent) if name.startswith(f"race{attempt}")] == []
