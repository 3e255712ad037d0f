"""Real QEMU without a guest (-S) in a test namespace, and its own view of its network
(`info network` on the human monitor): the oracle for qemu-args and translate."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Dict, List

QEMU_BASE = ["qemu-system-x86_64", "-accel", "tcg", "-m", "64", "-S", "-nodefaults",
             "-display", "none", "-monitor", "stdio"]
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def privilege_drop_args(user: str, qemu: str = "qemu-system-x86_64") -> List[str]:
    """The options that make QEMU switch to `user` once the VM is set up (after the
    upscripts, before the downscripts): `-run-with user=` where QEMU has it (9.1 and
    later; QEMU 10 removed -runas), else `-runas`."""
    usage = subprocess.run([qemu, "-help"], stdout=subprocess.PIPE, text=True,
                           check=True).stdout
    if re.search(r"^-run-with .*user=", usage, re.MULTILINE):
        return ["-run-with", f"user={user}"]
    return ["-runas", user]


def start(ns, args: List[str], request, env=None, base: List[str] = QEMU_BASE) -> subprocess.Popen:
    """QEMU (`base` + `args`) in `ns`, killed by the finalizer if the test has not quit it."""
    qemu = ns.popen(*base, *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, env=env)

    def stop():
        if qemu.poll() is None:
            qemu.kill()
        qemu.communicate()
    request.addfinalizer(stop)
    return qemu


def info_network_and_quit(qemu: subprocess.Popen, timeout: float = 60) -> Dict[str, object]:
    """Ask for `info network`, quit, and return what QEMU said:
    {"nics": {name: {key: value}}, "netdevs": {id: {...}}, "hubs": {hub: [member names]},
     "returncode": ..., "stderr": ...}"""
    out, err = qemu.communicate("info network\nquit\n", timeout=timeout)
    nics: Dict[str, Dict[str, str]] = {}
    netdevs: Dict[str, Dict[str, str]] = {}
    hubs: Dict[int, List[str]] = {}
    hub = top = None
    for raw in out.splitlines():
        if "\x1b" in raw or raw.startswith("(qemu)") or raw.startswith("QEMU "):
            continue
        line = _ESCAPES.sub("", raw)
        match = re.match(r"^hub (\d+)$", line)
        if match:
            hub, top = int(match.group(1)), None
            hubs[hub] = []
            continue
        match = re.match(r"^( \\ )?(\S+): (?:(\S+): )?index=\d+,(.*)$", line)
        if not match:
            continue
        nested, first, second, rest = match.groups()
        fields = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
        if nested and second and hub is not None:  # " \ hub0p1: e1000.0: ..."
            name = second
            fields.update(hub=str(hub), port=first)
            hubs[hub].append(name)
        elif nested:  # " \ net0: ..." under the NIC it is the peer of
            name = first
            fields["peer"] = top
        else:
            name, hub, top = first, None, first
        (nics if fields.get("type") == "nic" else netdevs)[name] = fields
    return {"nics": nics, "netdevs": netdevs, "hubs": hubs, "returncode": qemu.returncode,
            "stderr": err}


LANS = (("eth0", "lan0", "192.0.2.1/24"), ("eth1", "lan1", "198.51.100.1/24"))


def make_lab(make_netns, prefix: str = "qih"):
    """A VM host namespace with uplinks eth0/eth1 (GRO on) to a LAN namespace holding
    the peers 192.0.2.1 and 198.51.100.1: (host, lan)."""
    host, lan = make_netns(f"{prefix}-host"), make_netns(f"{prefix}-lan")
    for uplink, peer, address in LANS:
        host.veth(uplink, peer)
        host.ip("link", "set", peer, "netns", lan.name)
        lan.ip("addr", "add", address, "dev", peer)
        lan.ip("link", "set", peer, "up")
    return host, lan


def console_lines(path, prefix: str = "QIH-") -> List[str]:
    """The guest's QIH-* lines on its serial console so far."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.startswith(prefix)]


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
