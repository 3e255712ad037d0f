"""Faults injected at every step of an ifup that builds its bridge.

strace stops the real hook at its N-th netlink request (every `sendto`), for every N
of a clean run, and there:
- makes the request fail (the kernel refusing an operation): the hook exits with a
  status from the table and one line, and the kernel is as it was before the hook;
- kills the hook (SIGKILL: nothing can undo): the next ifup completes the job, the
  bridge up with its pinned MTU and its uplink, the TAP attached;
- deletes the TAP, the bridge or the uplink while the hook is stopped (QEMU dying, an
  admin or the distribution's network tools acting at the same moment): the hook
  ends with a status from the table and one line, and on failure leaves the kernel as
  it was but for the link that was deleted.
The deterministic points replace random timing: every step is hit once per run of the
suite. An unusable /run (read-only, full, not a directory) is in test_hardening.py.
iproute2 is the oracle."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import assert_one_line_error

STATUSES = {0, 64, 65, 69, 71, 75, 77, 78}  # the table, without 70: an internal error is a bug
# Every kind of change an ifup makes: a bridge with a pinned MTU and an uplink, the
# TAP's rules in the bridge table, isolation, and rate limits through ifb devices.
CONFIG = """\
[vlan.0]
bridge = "br0"
uplink = "eth0"
mtu = 9000
port_security = "ip"
isolated = true
guest_rx_mbit = 10
guest_tx_mbit = 10

[port."tap0"]
mac = "52:54:00:12:34:56"
ipv4 = ["192.0.2.10"]
"""


@pytest.fixture(autouse=True)
def _strace():
    from conftest import cannot_run

    if shutil.which("strace") is None:
        cannot_run("needs strace (apt-get install strace)")


def scene(make_netns, hooks):
    """A host with the uplink eth0 (MTU 9000, GRO on) and a TAP held as QEMU holds it."""
    ns = make_netns("qih-f")
    ns.veth("eth0", "lan0")
    ns.ip("link", "set", "eth0", "mtu", "9000")
    holder = ns.hold_taps("tap0")
    hooks.write_config(CONFIG)
    return ns, holder


def traced(ns, hooks, inject: str, log: str = "/dev/null") -> subprocess.Popen:
    """The ifup-br0 entry under strace, with `inject` on its netlink requests."""
    return ns.popen("strace", "-f", "-qq", "-o", log, "-e", "trace=sendto", "-e",
                    f"inject=sendto:{inject}", str(hooks.entry("ifup-br0")), "tap0",
                    env=hooks.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def requests_of_a_clean_run(make_netns, hooks) -> int:
    ns, _ = scene(make_netns, hooks)
    log = hooks.dir / "strace.txt"
    done = ns.run("strace", "-f", "-qq", "-o", str(log), "-e", "trace=sendto",
                  str(hooks.entry("ifup-br0")), "tap0", env=hooks.env())
    assert done.returncode == 0, done.stderr
    count = sum(1 for line in log.read_text().splitlines() if "sendto(" in line)
    assert count >= 20, log.read_text()  # lookups, offloads, bridge, uplink, rules, limits, TAP
    return count


def guarded(ns) -> bool:
    """The bridge table sends tap0's frames to its chain (`nft -j`)."""
    done = ns.run("nft", "-j", "list", "map", "bridge", "qemu_ifhooks", "ports")
    return done.returncode == 0 and '"tap0"' in done.stdout


def assert_complete(ns) -> None:
    br0, tap0 = ns.link("br0"), ns.link("tap0")
    assert (br0["mtu"], "UP" in br0["flags"]) == (9000, True), br0
    assert ns.ports("br0") == ["eth0", "tap0"]
    assert (tap0["mtu"], "UP" in tap0["flags"]) == (9000, True), tap0
    assert guarded(ns)
    assert {"rx-tap0", "tx-tap0"} <= {link["ifname"] for link in ns.links()}


@pytest.mark.parametrize("errno_name, status", [("ENOBUFS", 71), ("EPERM", 77), ("ENODEV", 69)])
def test_a_refused_request_at_any_step_leaves_the_kernel_as_it_was(make_netns, hooks, errno_name, status):
    steps = requests_of_a_clean_run(make_netns, hooks)
    failed = 0
    for step in range(1, steps + 1):
        ns, _ = scene(make_netns, hooks)
        before = ns.snapshot()
        done = finish(traced(ns, hooks, f"error={errno_name}:when={step}"))
        if done.returncode == 0:  # a lookup that may fail: "no such link", or a fallback
            assert done.stderr == ""
            assert_complete(ns)
        else:
            assert_one_line_error(done, status)
            assert ns.snapshot() == before, f"step {step} of {steps}"
            assert not guarded(ns), f"step {step} of {steps}"
            failed += 1
        ns.cleanup()
    assert failed > steps // 2, failed  # most requests cannot be done without


def test_a_hook_killed_at_any_step_is_completed_by_the_next(make_netns, hooks):
    steps = requests_of_a_clean_run(make_netns, hooks)
    for step in range(1, steps + 1):
        ns, _ = scene(make_netns, hooks)
        done = finish(traced(ns, hooks, f"signal=KILL:when={step}"))
        assert done.returncode == -signal.SIGKILL or done.returncode == 128 + signal.SIGKILL, done
        again = hooks.run(ns, "ifup-br0", "tap0")
        assert (again.returncode, again.stderr) == (0, ""), f"step {step}: {again.stderr}"
        assert_complete(ns)
        ns.cleanup()


def wait_stopped(proc: subprocess.Popen, log, step: int, timeout: float = 20) -> int:
    """The PID of the hook once strace has stopped it (its log says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.endswith("--- stopped by SIGSTOP ---"):
                return int(line.split()[0])
        assert proc.poll() is None, f"step {step}: the hook ended before it was stopped"
        time.sleep(0.01)
    raise AssertionError(f"step {step}: the hook was never stopped")


@pytest.mark.parametrize("victim", ["tap0", "br0", "eth0"])
def test_a_link_deleted_at_any_step_ends_cleanly(make_netns, hooks, victim):
    steps = requests_of_a_clean_run(make_netns, hooks)
    outcomes = set()
    for step in range(1, steps + 1):
        ns, _ = scene(make_netns, hooks)
        before = ns.snapshot()
        log = hooks.dir / "strace.txt"
        log.write_text("")
        proc = traced(ns, hooks, f"signal=STOP:when={step}", str(log))
        pid = wait_stopped(proc, log, step)
        ns.ip("link", "del", victim, check=False)  # br0 may not exist yet
        os.kill(pid, signal.SIGCONT)
        done = finish(proc)
        outcomes.add(done.returncode)
        gone = {victim, "lan0"} if victim == "eth0" else {victim}  # a veth pair goes together
        if done.returncode == 0:
            assert victim != "tap0" or ns.link("tap0") is None, f"step {step}"
            if victim != "tap0" and ns.link(victim) is not None:
                assert ns.master_of("tap0") == "br0", f"step {step}"
        else:
            assert_one_line_error(done, done.returncode)
            assert done.returncode in STATUSES, f"step {step}: {done.stderr}"
            assert ns.snapshot() == [link for link in before if link[0] not in gone], \
                f"step {step} of {steps}: {done.stderr}"
            assert not guarded(ns), f"step {step} of {steps}"
        ns.cleanup()
    assert outcomes & {69, 71}, outcomes  # some steps must notice the deletion
