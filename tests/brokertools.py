"""`qemu-ifhooks broker` run by a test, as root in the test's namespace, stopped by PID;
and the config its tests share."""

from __future__ import annotations

import os
import subprocess

from conftest import CLI
from qemutools import wait_for

# vlan.0 is open to nobody; vlan.1 to a group nobody is not in.
CONFIG = """\
[vlan.0]
bridge = "br0"
uplink = "eth0"
allow_users = ["nobody"]

[vlan.1]
bridge = "br1"
uplink = "eth1"
allow_groups = ["qih-no-such-group"]
"""


class Broker:
    def __init__(self, host, hooks, request):
        self.socket = str(hooks.dir.parent / "broker.sock")  # a 0755 directory: nobody gets in
        self.process = host.popen(CLI, "broker", "--socket", self.socket, env=hooks.env(),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        request.addfinalizer(self.stop)
        assert wait_for(lambda: os.path.exists(self.socket) or self.process.poll() is not None,
                        15), "broker did not start"
        assert self.process.poll() is None, self.process.communicate()

    @property
    def pid(self) -> int:
        return self.process.pid  # `ip netns exec` execs: the broker's own PID

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            return int(next(l for l in status if l.startswith("VmRSS:")).split()[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
