"""Shared fixtures. Tests that change the kernel do it only inside network namespaces
they create (deleted by finalizers, also on failure) and check the outcome with
iproute2 (`ip -j`, `bridge -j`) and ethtool: oracles that share no code with the
project.

Set QEMU_IFHOOKS_STRICT=1 (the CI does) to turn "cannot run here" skips into failures,
so that no tier is silently skipped."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Type

import pytest

from qemu_ifhooks.lock import RUN_DIR

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOOK_PROGRAM = BIN / "qemu-ifhook"
CLI = BIN / "qemu-ifhooks"
TAPHOLDER = Path(__file__).resolve().parent / "tapholder.py"
NL_PROBE = Path(__file__).resolve().parent / "nl_probe.py"
RECORDS = "/run/qemu-ifhooks/attached"  # where ifup records what it attached
GUEST_DIR = Path(os.environ.get("QEMU_IFHOOKS_GUEST_DIR", ROOT / "build" / "guest"))


def cannot_run(reason: str) -> None:
    """Skip with the reason, or fail when every tier must run."""
    if os.environ.get("QEMU_IFHOOKS_STRICT") == "1":
        pytest.fail(f"required tier cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        cannot_run("needs root (network namespaces, CAP_NET_ADMIN)")
    for tool in ("ip", "bridge", "ethtool"):
        if shutil.which(tool) is None:
            cannot_run(f"needs {tool} (apt-get install iproute2 ethtool)")


def require_qemu() -> None:
    require_root()
    if shutil.which("qemu-system-x86_64") is None:
        cannot_run("needs qemu-system-x86_64 (apt-get install qemu-system-x86)")


def require_guest() -> None:
    require_qemu()
    if not (GUEST_DIR / "vmlinuz").is_file() or not (GUEST_DIR / "initrd.img").is_file():
        cannot_run(f"needs the guest kernel and initramfs in {GUEST_DIR} (make guest)")


def debian_release() -> int:
    """The major version of the running Debian release (os-release VERSION_ID); 0 if
    unknown (testing, unstable, not Debian)."""
    try:
        version = platform.freedesktop_os_release().get("VERSION_ID", "").split(".")[0]
    except OSError:
        return 0
    return int(version) if version.isdigit() else 0


def sh(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed ({done.returncode}): "
                             f"{done.stderr.strip()}")
    return done


class Netns:
    """A network namespace of the test's own, with iproute2 as the oracle."""

    def __init__(self, name: str):
        self.name = name
        self.holders: List[subprocess.Popen] = []

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "-n", self.name, *args, check=check)

    def run(self, *argv: str, env: Optional[Dict[str, str]] = None, check: bool = False,
            **kwargs) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.name, *argv, check=check, env=env, **kwargs)

    def popen(self, *argv: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *map(str, argv)], **kwargs)

    def run_as(self, user: str, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        """`run` as another user (group nogroup, no supplementary groups), as after
        QEMU's -run-with user= (-runas before QEMU 10)."""
        if shutil.which("setpriv") is None:
            cannot_run("needs setpriv (apt-get install util-linux)")
        return self.run("setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups",
                        *argv, **kwargs)

    def probe(self, ops: List[dict], user: Optional[str] = None) -> list:
        """qemu_ifhooks.netlink / .ethtool calls run in the namespace by nl_probe.py (as
        `user` if given): one JSON result per op."""
        argv = (sys.executable, NL_PROBE, json.dumps(ops))
        done = (self.run_as(user, *argv, check=True, cwd="/") if user
                else self.run(*argv, check=True, cwd="/"))
        return json.loads(done.stdout)

    # --- oracle -----------------------------------------------------------------------
    def link(self, name: str) -> Optional[dict]:
        done = self.ip("-j", "-d", "link", "show", "dev", name, check=False)
        if done.returncode != 0:
            return None
        return json.loads(done.stdout)[0]

    def links(self) -> List[dict]:
        return json.loads(self.ip("-j", "-d", "link", "show").stdout)

    def master_of(self, name: str) -> Optional[str]:
        link = self.link(name)
        return link.get("master") if link else None

    def ports(self, bridge: str) -> List[str]:
        out = sh("bridge", "-n", self.name, "-j", "link").stdout
        return sorted(p["ifname"] for p in json.loads(out or "[]") if p.get("master") == bridge)

    def offloads(self, dev: str) -> Dict[str, str]:
        out = self.run("ethtool", "-k", dev, check=True).stdout
        pairs = (line.split(":", 1) for line in out.splitlines()[1:] if ":" in line)
        return {k.strip(): v.strip().split()[0] for k, v in pairs}

    def snapshot(self) -> List[tuple]:
        """What a failing hook must leave unchanged: every link's name, master, MTU,
        flags and address. The carrier flags are left out: the kernel derives them from
        the ports a moment later (linkwatch), so they may still be settling."""
        derived = {"NO-CARRIER", "LOWER_UP", "M-DOWN"}
        return sorted((l["ifname"], l.get("master"), l["mtu"],
                       tuple(f for f in l["flags"] if f not in derived), l.get("address"))
                      for l in self.links())

    # --- scenery ----------------------------------------------------------------------
    def veth(self, name: str, peer: str, gro: bool = True) -> None:
        self.ip("link", "add", "name", name, "type", "veth", "peer", "name", peer)
        self.ip("link", "set", name, "up")
        self.ip("link", "set", peer, "up")
        if gro:  # a veth starts with GRO off; a real uplink NIC has it on
            self.run("ethtool", "-K", name, "gro", "on", check=True)

    def bridge(self, name: str, *extra: str) -> None:
        self.ip("link", "add", "name", name, "type", "bridge", *extra)
        self.ip("link", "set", name, "up")

    def hold_taps(self, *names: str, tun: bool = False) -> subprocess.Popen:
        """TAPs with a live owner, as QEMU creates them; closed by the finalizer or by
        `release(holder)`."""
        argv = [sys.executable, TAPHOLDER] + (["--tun"] if tun else []) + list(names)
        holder = self.popen(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.holders.append(holder)
        assert holder.stdout.readline().strip() == "ready", "tap holder failed"
        return holder

    def release(self, holder: subprocess.Popen) -> None:
        holder.stdin.close()
        holder.wait(timeout=10)

    @property
    def inode(self) -> int:
        """The namespace's identity, as the hooks key their records on it."""
        return os.stat(f"/run/netns/{self.name}").st_ino

    def records(self) -> Dict[str, Dict[str, str]]:
        """TAP -> the fields of the attachment record ifup wrote in this namespace."""
        out = {}
        for path in Path(RECORDS).glob(f"{self.inode}-*"):
            if not path.name.endswith(".new"):
                assert path.is_symlink(), f"{path} is not a symbolic link"
                fields = dict(word.split("=", 1) for word in os.readlink(path).split(" "))
                out[path.name.split("-", 1)[1]] = fields
        return out

    def cleanup(self) -> None:
        for holder in self.holders:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
        with contextlib.suppress(OSError):  # a later namespace may get the same inode
            for path in Path(RECORDS).glob(f"{self.inode}-*"):
                path.unlink()
            for path in Path(RUN_DIR).glob(f"{self.inode}-*"):  # locks, the guards mark
                path.unlink()
        subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL)


def pytest_terminal_summary(terminalreporter) -> None:
    """The result line of the Debian 13 tier (tests/test_debian13.py), if it ran."""
    for line in getattr(sys.modules.get("test_debian13"), "SUMMARY", []):
        terminalreporter.write_line(line)


@pytest.fixture
def make_netns(request):
    """Factory of namespaces (of class `kind`, a Netns subclass if the test module
    needs more), all deleted at the end of the test."""
    require_root()
    made: List[Netns] = []

    def make(prefix: str = "qih-t", kind: Type[Netns] = Netns) -> Netns:
        ns = kind(f"{prefix}-{uuid.uuid4().hex[:8]}")
        sh("ip", "netns", "add", ns.name)
        made.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def finalize():
        for ns in made:
            ns.cleanup()
    request.addfinalizer(finalize)
    return make


@pytest.fixture(scope="session")
def full_kernel(request):
    """One boot of the full-kernel guest (tests/fullkernel.py) for every vm_* check
    that this run collected: test_in_vm of each module reports its own."""
    import fullkernel

    return fullkernel.run_collected(request.session.items)


@pytest.fixture
def netns(make_netns) -> Netns:
    return make_netns()


SEED_CONFIG = """\
[vlan.0]
bridge = "br0"
uplink = "eth0"

[vlan.1]
bridge = "br1"
uplink = "eth1"
"""


class Hooks:
    """A config file and hook entries (symlinks named as QEMU would run them)."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(mode=0o755, exist_ok=True)
        self.config = directory / "qemu-ifhooks.toml"
        self.log = directory / "hooks.log"

    def write_config(self, text: str, mode: int = 0o644) -> Path:
        self.config.write_text(text)
        os.chmod(self.config, mode)
        return self.config

    def env(self, **extra: str) -> Dict[str, str]:
        return {**os.environ, "QEMU_IFHOOKS_CONFIG": str(self.config),
                "QEMU_IFHOOKS_LOG": str(self.log), **extra}

    def entry(self, name: str) -> Path:
        path = self.dir / name
        if not os.path.lexists(path):  # else the entry `qemu-ifhooks install` wrote
            path.symlink_to(HOOK_PROGRAM)
        return path

    def run(self, ns: Netns, name: str, tap: str, **env: str) -> subprocess.CompletedProcess:
        return ns.run(str(self.entry(name)), tap, env=self.env(**env))

    def cli(self, ns: Netns, *args: str, **env: str) -> subprocess.CompletedProcess:
        """`qemu-ifhooks ARGS` in the namespace, with this config."""
        return ns.run(str(CLI), *args, env=self.env(**env))

    def log_lines(self) -> List[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def logged_commands(self, action: str, tap: str) -> List[str]:
        """The kernel operations a hook logged for `action` (ifup/ifdown) on `tap`, as
        `ip` commands."""
        prefix = f"{action} {tap}: "
        return [line.split(prefix, 1)[1] for line in self.log_lines()
                if prefix in line and "result=" not in line]


def planned_commands(stdout: str) -> List[str]:
    """The commands of `qemu-ifhooks plan` output (without its # notes)."""
    return [line for line in stdout.splitlines() if not line.startswith("#")]


@pytest.fixture
def seed(netns, hooks):
    """The seed's two VLANs: uplinks eth0/eth1 (veths with GRO on), no bridges yet."""
    netns.veth("eth0", "lan0")
    netns.veth("eth1", "lan1")
    hooks.write_config(SEED_CONFIG)
    return netns


@pytest.fixture
def hooks() -> Hooks:
    # Not under pytest's 0700 tmp_path: hooks also run as an unprivileged user, as
    # after QEMU's -run-with user= (or -runas).
    directory = Path(tempfile.mkdtemp(prefix="qemu-ifhooks-test."))
    os.chmod(directory, 0o755)
    made = Hooks(directory / "hooks")
    yield made
    shutil.rmtree(directory, ignore_errors=True)
    from qemu_ifhooks.configcache import cache_path

    with contextlib.suppress(OSError):  # the hooks' parse cache of this config, if any
        os.unlink(cache_path(str(made.config)))


def assert_one_line_error(done: subprocess.CompletedProcess, status: int,
                          *fragments: str) -> None:
    """The contract for every failure: the status from the table, one line on stderr
    that says what happened, no traceback."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == status, (done.returncode, done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("qemu-ifhooks: "), lines[0]
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
