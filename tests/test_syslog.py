"""Every hook action reaches syslog (ident qemu-ifhooks): the hook runs in a private mount
namespace where /dev/log is a datagram socket of the test's own."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
import time

import pytest
from conftest import SEED_CONFIG


def test_ifup_and_ifdown_are_logged_to_syslog(netns, hooks):
    netns.veth("eth0", "lan0")
    hooks.write_config(SEED_CONFIG)
    netns.hold_taps("tap0")
    directory = tempfile.mkdtemp(prefix="qemu-ifhooks-syslog.")
    path = os.path.join(directory, "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(0.5)  # datagrams are queued before the hook exits
        for name in ("ifup-br0", "ifdown-br0"):
            entry = hooks.entry(name)
            script = (f"mount -t tmpfs none /dev && touch /dev/log && "
                      f"mount --bind {path} /dev/log && exec {entry} tap0")
            done = netns.run("unshare", "--mount", "sh", "-c", script, env=hooks.env())
            assert (done.returncode, done.stderr) == (0, "")
        messages = []
        try:
            while True:
                messages.append(server.recv(4096).decode())
        except socket.timeout:
            pass
    os.unlink(path)
    os.rmdir(directory)

    # Each line as glibc's syslog() writes it (RFC 3164): <PRI> (30 = daemon.info), the
    # local time, then the ident with the process's PID.
    header = re.compile(r"<(\d+)>[A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d qemu-ifhooks\[[1-9]\d*\]: ")
    assert messages and all(header.match(m) for m in messages), messages
    results = [m for m in messages if "result=" in m]
    assert len(results) == 2, messages
    for message, action in zip(results, ("ifup", "ifdown")):
        assert header.match(message).group(1) == "30"
        for field in (f"action={action}", "tap=tap0", "bridge=br0", "vlan=0", "result=ok",
                      "duration_ms="):
            assert field in message
    assert any("ip link set dev tap0 master br0" in m for m in messages)


@pytest.fixture
def syslogd(tmp_path, monkeypatch):
    """log.py pointed at a datagram socket of the test's own, as a fresh process
    starts: not connected, no failure remembered. Yields a function that binds the
    daemon's socket (again: a restart)."""
    from qemu_ifhooks import log

    path = str(tmp_path / "log")
    monkeypatch.setattr(log, "LOG_PATH", path)
    monkeypatch.setattr(log, "_syslog_socket", None)
    monkeypatch.setattr(log, "_syslog_missing_until", 0.0)
    servers = []

    def start() -> socket.socket:
        if os.path.exists(path):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(path)
        server.setblocking(False)
        servers.append(server)
        return server

    yield start
    if log._syslog_socket is not None:
        log._syslog_socket.close()
    for server in servers:
        server.close()


def received(server: socket.socket) -> list:
    lines = []
    while True:
        try:
            lines.append(server.recv(4096).decode())
        except BlockingIOError:
            return lines


def test_a_restarted_syslog_daemon_gets_the_next_line(syslogd):
    """A long-running process (the broker) connects again when the daemon's socket
    was replaced, as glibc does."""
    from qemu_ifhooks import log

    first = syslogd()
    log.emit(log.LOG_INFO, "before the restart")
    assert [m.split(": ", 1)[1] for m in received(first)] == ["before the restart"]
    first.close()
    second = syslogd()
    log.emit(log.LOG_WARNING, "after the restart")
    assert [m.split(": ", 1)[1] for m in received(second)] == ["after the restart"]
    assert received(second) == []


def test_without_a_daemon_lines_are_dropped_and_tried_again_later(syslogd, monkeypatch):
    from qemu_ifhooks import log

    log.emit(log.LOG_INFO, "nobody listens")  # no socket at LOG_PATH: dropped, no error
    server = syslogd()
    log.emit(log.LOG_INFO, "within the second")
    assert received(server) == []  # one try per second, not one per line
    monkeypatch.setattr(log, "_syslog_missing_until", time.monotonic() - 1)  # a second on
    log.emit(log.LOG_INFO, "later")
    assert [m.split(": ", 1)[1] for m in received(server)] == ["later"]


def test_a_daemon_that_does_not_read_never_blocks_the_hook(syslogd):
    """The daemon's queue full: the lines that do not fit are lost, and emit() returns
    at once (a blocking send would hang the VM start)."""
    from qemu_ifhooks import log

    server = syslogd()  # never read until the end
    with open("/proc/sys/net/unix/max_dgram_qlen") as f:
        queue = int(f.read())
    flood = threading.Thread(target=lambda: [log.emit(log.LOG_INFO, f"line {n}")
                                             for n in range(queue + 100)], daemon=True)
    flood.start()
    flood.join(10)
    assert not flood.is_alive()  # a blocked one ends when the fixture closes the daemon
    got = received(server)
    assert 0 < len(got) < queue + 100
    assert got[0].endswith(": line 0")
