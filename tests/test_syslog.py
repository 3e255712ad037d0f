"""Every hook action reaches syslog (ident qemu-ifhooks): the hook runs in a private mount
namespace where /dev/log is a datagram socket of the test's own."""

from __future__ import annotations

import os
import re
import socket
import tempfile

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
