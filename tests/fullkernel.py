"""The full-kernel test tier: tests run inside a throwaway QEMU guest.

This machine's kernel lacks 802.1Q and bridge VLAN filtering.  The guest is Debian's
own kernel (the one linux-image-amd64 depends on, built into GUEST_DIR by
tools/build-guest.sh) under QEMU's TCG, which emulates the CPU and so runs on any
x86-64 host, whatever its CPU features or its kernel build.  Its root is the host's:
the host's root filesystem, shared read-only over virtio-9p, under an overlayfs whose
upper layer is a tmpfs (tools/hostroot-init.sh), so the project, its venv, python and
iproute2 run there unchanged, and every change, to the network or to files, stays in
the guest and disappears with it.  A second, writable 9p share is the work directory
that brings the results back.  Modules come from the kernel package itself
(`modprobe -d GUEST_DIR/modules`).

On the host (pytest):

    require_full_kernel()          skip (fail under QEMU_IFHOOKS_STRICT=1) without
                                   QEMU or the guest files
    boot(script) -> Boot           run a shell script as the payload of one boot
    run_pytest({path: names})      run test functions (named vm_*, so the host's pytest
      -> VmResults                 does not collect them) of several files in one boot
    results.report(path, name)     in a host test: pass, or fail or skip with the
                                   guest-side pytest report (assertion introspection
                                   included)

The session fixture `full_kernel` of conftest.py boots once for every vm_* check that
the run collected (through test_in_vm of each module):

    @pytest.mark.parametrize("check", fullkernel.checks(globals()))
    def test_in_vm(full_kernel, check):
        full_kernel.report(__file__, check)

How a boot goes: a temporary directory (the work directory) holds the payload and a
generated run.sh.  QEMU boots with the console on a file; the guest's /init mounts its
root and runs run.sh in it, which loads the modules, brings lo up, runs the payload
with its output into a file, records the exit status, and the guest powers off.  The
host waits with a time limit, kills QEMU whatever happened, reads the results and
deletes the directory.  A guest that panics, hangs or never runs its payload ends in
one VmError with the tail of the guest's console.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DEFAULT_MODULES = ("8021q", "bridge", "veth", "tun", "dummy")
DEFAULT_TIMEOUT = 300.0  # seconds for one boot, payload included
MEMORY_MB = 1024
# Passed into the guest when set on the host.
# The guest's checks find the guest files (kernel release, modules) where the host did.
PASS_ENV = ("QEMU_IFHOOKS_STRICT", "QEMU_IFHOOKS_DEBUG", "QEMU_IFHOOKS_GUEST_DIR")
IN_VM_ENV = "QEMU_IFHOOKS_IN_VM"
OUT_ENV = "QEMU_IFHOOKS_VM_OUT"
RESULTS_FILE = "results.jsonl"
_TAIL = 4000
_TEMP_PREFIX = "qemu-ifhooks-vm."


class VmError(Exception):
    """The boot itself went wrong: time-out, panic, QEMU failing, a module that did not load."""


def _guest_dir() -> Path:
    from conftest import GUEST_DIR

    return GUEST_DIR


def require_full_kernel() -> None:
    """Skip (or fail under QEMU_IFHOOKS_STRICT=1) when the tier cannot run."""
    from conftest import cannot_run, require_qemu

    require_qemu()
    guest = _guest_dir()
    for name in ("vmlinuz", "initrd-hostroot.img", "kernel-release"):
        if not (guest / name).is_file():
            cannot_run(f"needs the full-kernel guest's {name} in {guest} (make guest)")
    if not (guest / "modules" / "lib" / "modules" / kernel_release() / "modules.dep").is_file():
        cannot_run(f"needs the guest kernel's modules in {guest}/modules (make guest)")


def kernel_release() -> str:
    """The release of the guest's kernel (`uname -r` inside)."""
    return (_guest_dir() / "kernel-release").read_text().strip()


def in_vm() -> bool:
    return os.environ.get(IN_VM_ENV) == "1"


@dataclass
class Boot:
    """What one boot left behind (everything was read before the cleanup)."""

    status: int  # the payload's exit status
    output: str  # the payload's stdout and stderr
    console: str  # the guest's console: kernel messages and /init's own lines
    seconds: float  # from QEMU's start to its exit
    boot_seconds: float  # from QEMU's start until the payload started
    files: Dict[str, bytes] = field(default_factory=dict)  # what the payload left in $QEMU_IFHOOKS_VM_OUT

    def tail(self) -> str:
        return _tails(self.output, self.console)


def _tails(output: str, console: str) -> str:
    return f"--- payload output ---\n{output[-_TAIL:]}\n--- guest console ---\n{console[-_TAIL:]}"


def _run_script(work: Path, modules: Sequence[str], env: Dict[str, str], cwd: Path) -> str:
    """run.sh: what the guest's /init runs in the guest's root (tools/hostroot-init.sh)."""
    q = shlex.quote
    lines = [
        "# Generated by tests/fullkernel.py; run by the full-kernel guest's /init.",
        f"W={q(str(work))}",
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "export HOME=/root LANG=C.UTF-8 TERM=dumb PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
        f"export {IN_VM_ENV}=1 {OUT_ENV}=\"$W/out\"",
    ]
    lines += [f"export {k}={q(v)}" for k, v in sorted(env.items())]
    lines += ["{", "fail="]
    for mod in modules:
        lines.append(f"modprobe -d {q(str(_guest_dir().resolve() / 'modules'))} {q(mod)} || fail=\"$fail {mod}\"")
    lines += [
        "ip link set lo up",
        "} > \"$W/setup.txt\" 2>&1",
        "if [ -n \"$fail\" ]; then",
        "  echo \"modprobe failed:$fail\" >> \"$W/setup.txt\"",
        "  exit 1",
        "fi",
        ": > \"$W/payload-started\"",
        f"(cd {q(str(cwd))} && exec /bin/sh \"$W/payload.sh\") > \"$W/output.txt\" 2>&1 < /dev/null",
        "echo $? > \"$W/status.tmp\" && mv \"$W/status.tmp\" \"$W/status\"",
    ]
    return "\n".join(lines) + "\n"


def _qemu_argv(work: Path) -> List[str]:
    guest = _guest_dir()
    return [
        "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", str(MEMORY_MB),
        "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
        "-serial", f"file:{work / 'console.txt'}",
        "-kernel", str(guest / "vmlinuz"), "-initrd", str(guest / "initrd-hostroot.img"),
        # panic=-1: a panic reboots at once, and -no-reboot turns that into QEMU's exit.
        "-append", f"console=ttyS0 panic=-1 quiet qih.work={work}",
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={work},mount_tag=work,security_model=passthrough,multidevs=remap",
    ]  # fmt: skip


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _why_no_status(work: Path, returncode: int, console: str) -> str:
    """The one-line cause of a boot that ended without the payload's status."""
    for line in console.splitlines():
        if "Kernel panic" in line:
            return f"the guest kernel panicked: {line.strip()}"
    setup = _read(work / "setup.txt")
    if "modprobe failed:" in setup:
        return f"the guest could not load its modules:\n{setup.strip()}"
    for line in console.splitlines():
        if line.startswith("QIH-INIT ") and "exited with" not in line and "running" not in line:
            return f"the guest's init failed: {line[len('QIH-INIT '):]}"
    if returncode != 0:
        qemu = _read(work / "qemu.txt").strip()
        return f"QEMU exited with status {returncode} before the payload finished" + (f": {qemu}" if qemu else "")
    if (work / "payload-started").exists():
        return "the payload did not finish (the guest powered off or the payload was killed)"
    return "the guest powered off without running the payload"


def boot(
    script: str,
    *,
    modules: Sequence[str] = DEFAULT_MODULES,
    timeout: float = DEFAULT_TIMEOUT,
    env: Optional[Dict[str, str]] = None,
    cwd: os.PathLike = ROOT,
) -> Boot:
    """Boot the guest, run `script` (a /bin/sh script) as its payload and return what it did.

    The payload runs as root in the guest's initial network namespace, with cwd `cwd`,
    the `modules` loaded, $QEMU_IFHOOKS_IN_VM=1 and $QEMU_IFHOOKS_VM_OUT, a directory
    whose files come back in Boot.files.  The host's files are all there as they were
    when the guest booted.  Raises VmError when the boot takes longer than `timeout`
    seconds, the guest panics, QEMU fails, a module does not load, or the payload never
    finishes; QEMU and the work directory are gone either way.
    """
    require_full_kernel()
    env = {**{k: os.environ[k] for k in PASS_ENV if k in os.environ}, **(env or {})}
    work = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))
    proc = None
    try:
        (work / "out").mkdir()
        (work / "payload.sh").write_text(script)
        (work / "run.sh").write_text(_run_script(work, modules, env, Path(cwd)))
        started = time.monotonic()
        payload_started = None
        with open(work / "qemu.txt", "wb") as qemu_out:
            proc = subprocess.Popen(_qemu_argv(work), stdin=subprocess.DEVNULL, stdout=qemu_out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        while proc.poll() is None and time.monotonic() - started < timeout:
            if payload_started is None and (work / "payload-started").exists():
                payload_started = time.monotonic()
            time.sleep(0.1)
        seconds = time.monotonic() - started
        console = _read(work / "console.txt")
        output = _read(work / "output.txt")
        if proc.poll() is None:
            raise VmError(f"the full-kernel guest did not finish within {timeout:g} s\n{_tails(output, console)}")
        status = _read(work / "status").strip()
        if not status:
            raise VmError(f"{_why_no_status(work, proc.returncode, console)}\n{_tails(output, console)}")
        files = {p.name: p.read_bytes() for p in (work / "out").iterdir() if p.is_file()}
        boot_seconds = (payload_started or started + seconds) - started
        return Boot(int(status), output, console, seconds, boot_seconds, files)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


# --- pytest inside the guest -----------------------------------------------------------------


class Outcome(NamedTuple):
    outcome: str  # "passed", "failed" or "skipped"
    text: str  # pytest's report (assertion introspection, captured output) or skip reason
    seconds: float


def _key(path: os.PathLike, name: str) -> str:
    return f"{Path(path).resolve()}::{name}"


@dataclass
class VmResults:
    boot: Optional[Boot]
    outcomes: Dict[str, Outcome]  # by "/abs/path.py::name"
    error: Optional[str] = None  # why the boot gave no results at all

    def report(self, path: os.PathLike, name: str) -> None:
        """Turn the guest-side result of `name` in file `path` into this (host) test's outcome."""
        if self.error is not None:
            pytest.fail(self.error, pytrace=False)
        got = self.outcomes.get(_key(path, name))
        if got is None:
            pytest.fail(f"{name} did not report from the guest (pytest exit {self.boot.status})\n{self.boot.tail()}",
                        pytrace=False)
        if got.outcome == "failed":
            pytest.fail(f"{name} failed in the guest:\n{got.text}", pytrace=False)
        if got.outcome == "skipped":
            pytest.skip(f"in the guest: {got.text}")


def checks(namespace: dict, prefix: str = "vm_") -> List[str]:
    """Names of the payload functions in a module's globals(), in definition order."""
    return [name for name, obj in namespace.items() if name.startswith(prefix) and callable(obj)]


def run_pytest(wanted: Dict[os.PathLike, Sequence[str]], *, prefix: str = "vm_",
               timeout: float = DEFAULT_TIMEOUT, **kwargs) -> VmResults:
    """Run the test functions `wanted` ({file: [names]}) with pytest in one boot.

    They are collected as test functions by their prefix (`-o python_functions`), so
    the host's pytest, which collects test_*, leaves them alone.  Fixtures of
    conftest.py work as usual inside.  Every result comes back, failures with the
    full pytest report.  A boot that fails gives a VmResults whose every report fails
    with the reason (so each check says why, rather than one error for all).
    """
    nodeids = [f"{Path(path).resolve()}::{name}" for path, names in wanted.items() for name in names]
    argv = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "fullkernel",
        "-o", f"python_functions={prefix}*", "-o", "addopts=", "--rootdir", str(ROOT), *nodeids,
    ]  # fmt: skip
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), **kwargs.pop("env", {})}
    try:
        result = boot(" ".join(shlex.quote(a) for a in argv) + "\n", env=env, timeout=timeout, **kwargs)
    except VmError as err:
        return VmResults(None, {}, f"the full-kernel guest gave no results: {err}")
    outcomes: Dict[str, Outcome] = {}
    for line in result.files.get(RESULTS_FILE, b"").decode(errors="replace").splitlines():
        rep = json.loads(line)
        key = rep["nodeid"]
        old = outcomes.get(key)
        if rep["outcome"] == "failed":
            where = "" if rep["when"] == "call" else f"(error in {rep['when']})\n"
            before = old.text + "\n" if old is not None and old.outcome == "failed" else ""
            outcomes[key] = Outcome("failed", before + where + rep["text"], rep["duration"])
        elif old is None or old.outcome == "passed":
            outcomes[key] = Outcome(rep["outcome"], rep["text"], rep["duration"])
    return VmResults(result, outcomes)


def run_collected(items: Iterable[pytest.Item], fixture: str = "full_kernel") -> VmResults:
    """One boot for the checks of every collected host test that uses `fixture`
    (parametrized with `check`): the tier's whole selection, in file order."""
    require_full_kernel()
    wanted: Dict[Path, List[str]] = {}
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if fixture in getattr(item, "fixturenames", ()) and "check" in params:
            wanted.setdefault(Path(item.path), []).append(params["check"])
    return run_pytest(wanted, timeout=DEFAULT_TIMEOUT + 60 * len(wanted))


# The pytest plugin (`-p fullkernel`) that reports each result from inside the guest.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    # The node ID's path is relative to --rootdir, and empty for a file outside it.
    report.user_properties.append(("path", str(item.path)))


def pytest_runtest_logreport(report) -> None:
    if not in_vm() or OUT_ENV not in os.environ:
        return
    if report.when != "call" and report.outcome == "passed":
        return
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        text = report.longrepr[2]
    else:
        text = report.longreprtext
    path = dict(report.user_properties)["path"]
    line = {"nodeid": _key(path, report.nodeid.rpartition("::")[2]), "when": report.when,
            "outcome": report.outcome, "text": text, "duration": report.duration}
    with open(Path(os.environ[OUT_ENV]) / RESULTS_FILE, "a") as out:
        out.write(json.dumps(line) + "\n")
