"""A real libvirtd (Debian's libvirt-daemon and its QEMU driver) for the libvirt tier,
run by the test inside a network namespace of its own and a private mount namespace in
which its directories (/etc/libvirt, /run/libvirt, /var/{lib,log,cache}/libvirt) and
/etc/passwd, /etc/group are private copies: the host's files are never written. Stopped
by PID, after every domain it ran."""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from conftest import sh
from qemutools import wait_for

DIRS = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt",
        "/var/cache/libvirt")
PACKAGES = "libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients"

LIBVIRTD_CONF = """\
unix_sock_dir = "{sock}"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:{log}"
"""
# What lets the QEMU driver run in a namespace as root without cgroups, security
# drivers or virtlogd (DESIGN.md §4).
QEMU_CONF = """\
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
dynamic_ownership = 0
"""


class Libvirtd:
    def __init__(self, ns, base: Path):
        self.ns = ns
        self.base = base
        self.sock = base / "sock"
        self.uri = f"qemu:///system?socket={self.sock}/libvirt-sock"
        self.process: Optional[subprocess.Popen] = None
        self.made_dirs: List[str] = []

    def _setup_script(self) -> str:
        """Shell run in the private mount namespace before exec'ing libvirtd."""
        lines = ["set -e"]
        for directory in DIRS:
            private = self.base / directory.strip("/").replace("/", "-")
            private.mkdir(exist_ok=True)
            lines.append(f"mount --bind {private} {directory}")
        for name, line in (("passwd", "libvirt-qemu:x:64055:64055:libvirt:/nonexistent:"
                                      "/usr/sbin/nologin"),
                           ("group", "libvirt-qemu:x:64055:")):
            # The QEMU driver looks its default user up before it reads qemu.conf.
            copy = self.base / name
            text = Path(f"/etc/{name}").read_text()
            if not any(l.startswith("libvirt-qemu:") for l in text.splitlines()):
                text += line + "\n"
            copy.write_text(text)
            lines.append(f"mount --bind {copy} /etc/{name}")
        lines.append(f"exec libvirtd -f {self.base / 'libvirtd.conf'} "
                     f"-p {self.base / 'libvirtd.pid'}")
        return "\n".join(lines)

    def start(self, timeout: float = 120) -> None:
        for directory in DIRS:  # mount points; removed again by stop() when empty
            if not os.path.isdir(directory):
                os.makedirs(directory)
                self.made_dirs.append(directory)
        self.sock.mkdir()
        etc = self.base / "etc-libvirt"
        script = self._setup_script()
        (etc / "libvirtd.conf").write_text("")  # the daemon reads -f, the driver this dir
        (etc / "qemu.conf").write_text(QEMU_CONF)
        (self.base / "libvirtd.conf").write_text(
            LIBVIRTD_CONF.format(sock=self.sock, log=self.base / "libvirtd.log"))
        self.process = self.ns.popen("unshare", "-m", "--propagation", "private",
                                     "sh", "-c", script, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ready = wait_for(lambda: self.process.poll() is not None
                         or self.virsh("version", check=False).returncode == 0, timeout)
        if not ready or self.process.poll() is not None:
            out = self.process.stdout.read() if self.process.poll() is not None else ""
            raise AssertionError(f"libvirtd did not start: {out} {self.log_tail()}")

    def virsh(self, *args: str, check: bool = True, timeout: float = 120,
              **kwargs) -> subprocess.CompletedProcess:
        """virsh against this daemon (the socket is on the shared file system)."""
        return sh("virsh", "-q", "-c", self.uri, *args, check=check, timeout=timeout,
                  stdin=subprocess.DEVNULL, **kwargs)

    def domains(self) -> List[str]:
        out = self.virsh("list", "--all", "--name").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.base / "libvirtd.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Destroy every domain, then stop the daemon by its PID; QEMU processes left in
        the namespace (the daemon did not reap them) are killed by theirs."""
        if self.process is not None and self.process.poll() is None:
            for name in self.domains():
                self.virsh("destroy", name, check=False)
            terminate(self.process)
        for pid in sh("ip", "netns", "pids", self.ns.name).stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        for directory in reversed(self.made_dirs):
            try:
                os.rmdir(directory)
            except OSError:
                pass


def terminate(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if the daemon has not exited within `timeout`."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def domain_xml(name: str, guest_dir: Path, cmdline: str, nics: List[str],
               console: Path) -> str:
    """A TCG domain with the busybox test guest; `nics`: <interface> elements."""
    interfaces = "\n    ".join(nics)
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{guest_dir / 'vmlinuz'}</kernel>
    <initrd>{guest_dir / 'initrd.img'}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    {interfaces}
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def interface_xml(tap: str, mac: str, ifup: str, ifdown: str) -> str:
    return (f"<interface type='ethernet'><mac address='{mac}'/><target dev='{tap}'/>"
            f"<model type='virtio'/><script path='{ifup}'/><downscript path='{ifdown}'/>"
            f"</interface>")


def logging_wrapper(path: Path, entry: Path, log: Path) -> Path:
    """A script that runs `entry` and appends its arguments and exit status to `log`:
    how the test sees what libvirt ran (libvirtd drops the hooks' environment, so their
    own trace file is out of reach)."""
    path.write_text(f"#!/bin/sh\n{shlex.quote(str(entry))} \"$@\"\nstatus=$?\n"
                    f"echo \"$* $status\" >> {shlex.quote(str(log))}\nexit $status\n")
    path.chmod(0o755)
    return path


# --- session mode (qemu:///session) -------------------------------------------------
SESSION_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# No virtlogd in session mode either; `bridge_helper` is what libvirtd runs for an
# <interface type='bridge'> when it is not root.
SESSION_QEMU_CONF = """\
bridge_helper = "{helper}"
stdio_handler = "file"
"""


class SessionLibvirtd:
    """libvirtd in session mode, as the unprivileged `user`, in the test's namespace
    `ns`: HOME and the XDG directories in `home`, a private 0700 directory the user
    owns (its passwd entry is not changed: nobody's home is /nonexistent). virsh
    connects to `qemu:///session` (the daemon's socket named) with the same uid and
    environment; LIBVIRT_AUTOSTART=0 keeps it from spawning a daemon of its own.
    Stopped by PID, then every process of the user left in the namespace (its QEMUs,
    which libvirt daemonizes) by theirs."""

    def __init__(self, ns, home: Path, user: str, helper: Path, env: Dict[str, str]):
        entry = pwd.getpwnam(user)
        self.ns, self.home, self.user = ns, home, user
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.helper = helper
        self.log = home / "libvirtd.log"
        self.env = {"HOME": str(home), "USER": user, "LOGNAME": user, "LC_ALL": "C",
                    "PATH": SESSION_PATH, "XDG_CONFIG_HOME": str(home / "config"),
                    "XDG_RUNTIME_DIR": str(home / "run"), "XDG_CACHE_HOME": str(home / "cache"),
                    "LIBVIRT_AUTOSTART": "0", **env}
        # The socket named: virsh would look for virtqemud's where that daemon is installed.
        self.uri = f"qemu:///session?socket={home}/run/libvirt/libvirt-sock"
        self.process: Optional[subprocess.Popen] = None

    def as_user(self, *argv: str) -> List[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "env", "-i", *(f"{k}={v}" for k, v in sorted(self.env.items())), *argv]

    def _make_home(self) -> None:
        self.home.mkdir(mode=0o700)
        config = self.home / "config" / "libvirt"
        config.mkdir(parents=True)
        (self.home / "run").mkdir(mode=0o700)
        (self.home / "cache").mkdir()
        (config / "qemu.conf").write_text(SESSION_QEMU_CONF.format(helper=self.helper))
        (config / "libvirtd.conf").write_text(f'log_outputs = "3:file:{self.log}"\n')
        for path in [self.home, *self.home.rglob("*")]:
            os.chown(path, self.uid, self.gid)

    def start(self, timeout: float = 120) -> None:
        self._make_home()
        with open(self.home / "libvirtd.out", "wb") as out:
            # setpriv and env exec: the Popen's PID is libvirtd's.
            self.process = self.ns.popen(*self.as_user("libvirtd"), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, cwd="/")
        ready = wait_for(lambda: self.process.poll() is not None
                         or self.virsh("version", check=False).returncode == 0, timeout)
        if not ready or self.process.poll() is not None:
            said = (self.home / "libvirtd.out").read_text(errors="replace")
            raise AssertionError(f"session libvirtd did not start: {said} {self.log_tail()}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def virsh(self, *args: str, check: bool = True, timeout: float = 120
              ) -> subprocess.CompletedProcess:
        return self.ns.run(*self.as_user("virsh", "-q", "-c", self.uri, *args),
                           check=check, timeout=timeout, stdin=subprocess.DEVNULL, cwd="/")

    def domains(self, check: bool = True) -> List[str]:
        out = self.virsh("list", "--all", "--name", check=check).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def user_pids(self) -> List[int]:
        """The user's processes in the namespace (libvirtd, its QEMUs)."""
        pids = []
        for pid in sh("ip", "netns", "pids", self.ns.name).stdout.split():
            try:
                if os.stat(f"/proc/{pid}").st_uid == self.uid:
                    pids.append(int(pid))
            except FileNotFoundError:
                pass
        return pids

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                for name in self.domains(check=False):
                    self.virsh("destroy", name, check=False, timeout=60)
            except subprocess.TimeoutExpired:
                pass  # its QEMUs are killed below
            terminate(self.process)
        for pid in self.user_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: self.user_pids() == [], 10)
