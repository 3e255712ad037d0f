"""Bad input and faults, each ending with the contracted exit status, one short line on
stderr, and the kernel as it was: names that are not UTF-8, a failure after the bridge
was built, names the kernel or a shell would rewrite, parser limits, closed or broken
stdio, a half-built bridge, an unusable /run, and names printed as commands.

The real hook runs in namespaces of the test's own; iproute2 is the oracle."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time

import pytest

from conftest import CLI, SEED_CONFIG, assert_one_line_error, planned_commands, sh

EX_USAGE, EX_UNAVAILABLE, EX_OSERR, EX_CONFIG = 64, 69, 71, 78


def ok(done: subprocess.CompletedProcess) -> None:
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


def ports_of(ns, bridge: str) -> list:
    """`bridge -j link` read as bytes-safe text: port names may not be UTF-8."""
    out = sh("bridge", "-n", ns.name, "-j", "link", errors="surrogateescape").stdout
    return sorted(p["ifname"] for p in json.loads(out or "[]") if p.get("master") == bridge)


# --- names that are not UTF-8 -----------------------------------------------------------------

@pytest.mark.parametrize("hook", ["ifup-br0", "qemu-ifup", "ifdown-br0"])
@pytest.mark.parametrize("tap", ["\udcff", "t\udcffp", "\udca0"])  # the bytes ff, 74 ff 70, a0
def test_a_tap_name_that_is_not_utf8_gets_one_line(seed, hooks, hook, tap):
    hooks.write_config(SEED_CONFIG + "\n[defaults]\nvlan = 0\n")
    before = seed.snapshot()
    done = seed.run(str(hooks.entry(hook)), tap, env=hooks.env(), errors="surrogateescape")
    if tap == "\udca0":  # a0 is the kernel's non-breaking space: not a valid name
        assert_one_line_error(done, EX_USAGE, "invalid interface name", "\\xa0")
    elif hook.startswith("ifdown"):
        ok(done)  # already gone
    else:
        assert_one_line_error(done, EX_UNAVAILABLE, "does not exist", "\\xff")
    assert seed.snapshot() == before
    assert all("\\xff" in line or "\\xa0" in line for line in hooks.log_lines() if "result=" in line)


def test_a_tap_whose_name_is_not_utf8_is_attached(seed, hooks):
    seed.hold_taps("t\udcffp")
    ok(seed.run(str(hooks.entry("ifup-br0")), "t\udcffp", env=hooks.env(), errors="surrogateescape"))
    assert ports_of(seed, "br0") == ["eth0", "t\udcffp"]


# --- a failed ifup undoes what it did -----------------------------------------------------------

def test_a_tap_on_another_bridge_is_refused_before_anything_is_built(seed, hooks):
    seed.bridge("brother")
    seed.hold_taps("tap0")
    seed.ip("link", "set", "tap0", "master", "brother", "up")
    deadline = time.monotonic() + 5  # the bridge's carrier follows its port's, a moment later
    while "NO-CARRIER" in seed.link("brother")["flags"] and time.monotonic() < deadline:
        time.sleep(0.05)
    before = seed.snapshot()
    assert_one_line_error(hooks.run(seed, "ifup-br0", "tap0"), EX_UNAVAILABLE,
                          "tap0 is already a port of another master")
    assert seed.snapshot() == before
    assert hooks.logged_commands("ifup", "tap0") == []


def test_a_failure_after_the_bridge_was_built_with_its_uplink_undoes_both(seed, hooks):
    """The bridge takes MTU 65535, the TAP does not: by then the bridge exists with its
    uplink enslaved, and the rollback frees the uplink and deletes the bridge."""
    seed.hold_taps("tap0")
    hooks.write_config('[vlan.0]\nbridge = "br0"\nuplink = "eth0"\nmtu = 65535\n')
    before = seed.snapshot()
    done = hooks.run(seed, "ifup-br0", "tap0")
    assert_one_line_error(done, EX_OSERR, "'ip link set dev tap0 mtu 65535' failed")
    assert seed.snapshot() == before
    assert hooks.logged_commands("ifup", "tap0")[-3:] == [
        "ip link set dev tap0 mtu 65535", "ip link set dev eth0 nomaster (undo)",
        "ip link del dev br0 (undo)"]


# A failure at every later step, the uplink enslaved included, is injected by
# tests/test_faults.py.


# --- names the kernel or a shell would rewrite ------------------------------------------------

@pytest.mark.parametrize("bridge", ["b%d", "br%d", "$(id>&2)"])
def test_a_bridge_name_the_kernel_or_a_shell_rewrites_is_a_config_error(netns, hooks, bridge):
    netns.hold_taps("tap0")
    hooks.write_config(f'[vlan.0]\nbridge = "{bridge}"\n')
    before = netns.snapshot()
    for _ in range(2):  # the kernel would make b0, then b1, ...
        assert_one_line_error(hooks.run(netns, "ifup-vlan0", "tap0"), EX_CONFIG, "vlan.0.bridge")
    assert netns.snapshot() == before


def test_plan_quotes_every_name_it_prints(seed, hooks):
    tap = "a$(id)'b"
    done = hooks.cli(seed, "plan", "ifup", tap, "--vlan", "0")
    for command in planned_commands(done.stdout):
        if tap in command or shlex.quote(tap) in command:
            assert shlex.quote(tap) in command and shlex.split(command).count(tap) == 1, command
    assert any(shlex.quote(tap) in c for c in planned_commands(done.stdout)), done.stdout


# --- parser limits ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "[" + ".".join(["a"] * 60000) + "]\n",  # 120 KB of dotted header
    '[vlan.0]\nbridge = "br0"\nmatch = ' + "[" * 900 + "]" * 900 + "\n",
    '[vlan.0]\nbridge = "br0"\nmtu = ' + "9" * 5000 + "\n",
    "x = 1\n" * 60000,  # 360 KB
])
def test_a_config_past_the_parser_limits_is_refused_at_once(seed, hooks, text):
    seed.hold_taps("tap0")
    hooks.write_config(text)
    started = time.monotonic()
    done = hooks.run(seed, "ifup-br0", "tap0")
    assert time.monotonic() - started < 2
    assert_one_line_error(done, EX_CONFIG, str(hooks.config))
    assert len(done.stderr) < 400


# --- closed and broken stdio --------------------------------------------------------------------

@pytest.mark.parametrize("redirect", ["2>&-", ">&-", ">&- 2>&- <&-"])
def test_closed_stdio_does_not_change_the_outcome(seed, hooks, redirect):
    seed.hold_taps("tap0")
    entry = shlex.quote(str(hooks.entry("ifup-br0")))
    done = seed.run("sh", "-c", f"{entry} tap0 {redirect}", env=hooks.env())
    assert done.returncode == 0, done.stderr
    assert seed.ports("br0") == ["eth0", "tap0"]
    failed = seed.run("sh", "-c", f"{entry} tap9 {redirect}", env=hooks.env())
    assert failed.returncode == EX_UNAVAILABLE


def test_a_reader_that_went_away_does_not_change_the_outcome(seed, hooks):
    seed.hold_taps("tap0")
    for tap, status in (("tap9", EX_UNAVAILABLE), ("bad/name", EX_USAGE), ("tap0", 0)):
        read, write = os.pipe()
        os.close(read)  # writes now fail with EPIPE
        try:
            done = subprocess.run(["ip", "netns", "exec", seed.name, str(hooks.entry("ifup-br0")), tap],
                                  env=hooks.env(), stdout=write, stderr=write)
        finally:
            os.close(write)
        assert done.returncode == status, tap
    assert seed.ports("br0") == ["eth0", "tap0"]


# --- a bridge a killed hook left half-built ------------------------------------------------------

@pytest.mark.parametrize("mtu", [9000, 1500])
def test_a_half_built_bridge_is_completed(netns, hooks, mtu):
    """Killed after creating the bridge: it is down, has its fixed MAC, no uplink and no
    pinned MTU. The next ifup finishes the job, and the MTU stays when a smaller port
    joins."""
    netns.veth("eth0", "lan0")
    netns.ip("link", "set", "eth0", "mtu", "9000")
    netns.ip("link", "set", "lan0", "mtu", "9000")
    address = netns.link("eth0")["address"]
    netns.ip("link", "add", "br0", "address", address, "type", "bridge")
    netns.hold_taps("tap0")
    hooks.write_config(f'[vlan.0]\nbridge = "br0"\nuplink = "eth0"\nmtu = {mtu}\n')
    ok(hooks.run(netns, "ifup-br0", "tap0"))
    br0 = netns.link("br0")
    assert (br0["mtu"], "UP" in br0["flags"], br0["address"]) == (mtu, True, address)
    assert netns.ports("br0") == ["eth0", "tap0"]
    netns.ip("link", "add", "small0", "mtu", "1400", "type", "veth", "peer", "name", "small1")
    netns.ip("link", "set", "small0", "master", "br0")
    assert netns.link("br0")["mtu"] == mtu  # pinned


# --- /run that cannot hold the lock -------------------------------------------------------------

PRIVATE_RUN = "mount -t tmpfs -o mode=755 tmpfs /run"


def run_with_private_run(ns, hooks, setup: str, tap: str = "tap0") -> subprocess.CompletedProcess:
    """The hook with a /run of its own (a tmpfs in a private mount namespace, prepared by
    the shell commands `setup`), so the host's /run is never touched."""
    entry = shlex.quote(str(hooks.entry("ifup-br0")))
    script = f"{setup} && exec {entry} {tap}"
    return ns.run("unshare", "-m", "--propagation", "private", "sh", "-c", script, env=hooks.env())


@pytest.mark.parametrize("setup, reason", [
    (f"{PRIVATE_RUN} -o ro", "Read-only file system"),
    (f"{PRIVATE_RUN} && touch /run/qemu-ifhooks", "Not a directory"),
    (f"{PRIVATE_RUN} && mkdir -p /run/qemu-ifhooks/$INO-br0.lock", "not a regular file"),
    (f"{PRIVATE_RUN} -o nr_inodes=1", "No space left on device"),
])
def test_an_unusable_run_is_one_line_and_changes_nothing(seed, hooks, setup, reason):
    seed.hold_taps("tap0")
    before = seed.snapshot()
    ino = os.stat(f"/run/netns/{seed.name}").st_ino
    done = run_with_private_run(seed, hooks, setup.replace("$INO", str(ino)))
    assert_one_line_error(done, EX_OSERR, "lock", reason)
    assert seed.snapshot() == before


def test_an_existing_lock_works_on_a_read_only_run(seed, hooks):
    seed.hold_taps("tap0")
    ino = os.stat(f"/run/netns/{seed.name}").st_ino
    setup = (f"{PRIVATE_RUN} && mkdir /run/qemu-ifhooks && touch /run/qemu-ifhooks/{ino}-br0.lock "
             f"&& mount -o remount,ro /run")
    ok(run_with_private_run(seed, hooks, setup))
    assert seed.ports("br0") == ["eth0", "tap0"]


def test_down_removes_the_bridge_lock(seed, hooks):
    seed.hold_taps("tap0")
    ok(hooks.run(seed, "ifup-br0", "tap0"))
    lock = f"/run/qemu-ifhooks/{os.stat(f'/run/netns/{seed.name}').st_ino}-br0.lock"
    assert os.path.exists(lock)
    assert hooks.cli(seed, "down", "0", "--force").returncode == 0
    assert seed.link("br0") is None
    assert not os.path.exists(lock)
    ok(hooks.run(seed, "ifup-br0", "tap0"))  # and a new one is made when needed
    assert os.path.exists(lock)
    assert hooks.cli(seed, "down", "0", "--force").returncode == 0


def test_the_cli_with_closed_stderr_keeps_its_status(seed, hooks):
    done = seed.run("sh", "-c", f"{shlex.quote(str(CLI))} up 7 2>&-", env=hooks.env())
    assert done.returncode == EX_USAGE
