"""The hook against real bridges, veths and TAPs in namespaces of the test's own.

Outcomes are read with iproute2 and ethtool, never with the project's own reader."""

from __future__ import annotations

import fcntl
import os
import pwd
import sys
import time

import pytest

from conftest import SEED_CONFIG, assert_one_line_error

EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_OSERR, EX_NOPERM, EX_TEMPFAIL, EX_CONFIG = \
    64, 65, 69, 71, 77, 75, 78


def flags(link: dict) -> set:
    return set(link["flags"])


def test_ifup_creates_bridge_attaches_uplink_and_tap(seed, hooks):
    seed.hold_taps("tap0")
    done = hooks.run(seed, "ifup-br0", "tap0")
    assert (done.returncode, done.stderr) == (0, "")

    br0 = seed.link("br0")
    assert br0["linkinfo"]["info_kind"] == "bridge"
    assert br0["linkinfo"]["info_data"]["stp_state"] == 0
    assert br0["linkinfo"]["info_data"]["forward_delay"] == 0
    assert "UP" in flags(br0)
    assert br0["address"] == seed.link("eth0")["address"]  # fixed: the uplink's MAC
    assert seed.ports("br0") == ["eth0", "tap0"]
    assert "UP" in flags(seed.link("tap0"))
    assert seed.link("br1") is None  # only the segment the hook is for

    result = [line for line in hooks.log_lines() if "result=" in line]
    assert len(result) == 1
    for field in ("action=ifup", "tap=tap0", "bridge=br0", "vlan=0", "result=ok",
                  "duration_ms="):
        assert field in result[0]


def test_ifup_is_idempotent(seed, hooks):
    seed.hold_taps("tap0")
    assert hooks.run(seed, "ifup-br0", "tap0").returncode == 0
    before = seed.snapshot()
    again = hooks.run(seed, "ifup-br0", "tap0")
    assert (again.returncode, again.stderr) == (0, "")
    assert seed.snapshot() == before


def test_vlan_and_generic_hook_names(seed, hooks):
    hooks.write_config(SEED_CONFIG.replace('uplink = "eth1"', 'uplink = "eth1"\nmatch = ["web-*"]')
                       + "\n[defaults]\nvlan = 0\n")
    seed.hold_taps("tapv", "web-1", "other")
    assert hooks.run(seed, "ifup-vlan1", "tapv").returncode == 0
    assert hooks.run(seed, "qemu-ifup", "web-1").returncode == 0
    assert hooks.run(seed, "qemu-ifup", "other").returncode == 0
    assert seed.master_of("tapv") == "br1"
    assert seed.master_of("web-1") == "br1"
    assert seed.master_of("other") == "br0"  # [defaults] vlan
    assert hooks.run(seed, "qemu-ifdown", "web-1").returncode == 0
    assert seed.master_of("web-1") is None


def test_bridge_mac_stays_fixed_while_taps_come_and_go(netns, hooks):
    hooks.write_config('[vlan.3]\nbridge = "brx"\n')  # no uplink: a derived MAC
    netns.hold_taps("tapa", "tapb")
    # The lowest MAC on the bridge would win if the bridge address were not pinned.
    netns.ip("link", "set", "tapb", "address", "02:00:00:00:00:01")
    assert hooks.run(netns, "ifup-brx", "tapa").returncode == 0
    mac = netns.link("brx")["address"]
    assert int(mac.split(":")[0], 16) & 0x03 == 0x02  # locally administered unicast
    assert hooks.run(netns, "ifup-brx", "tapb").returncode == 0
    assert netns.link("brx")["address"] == mac
    assert hooks.run(netns, "ifdown-brx", "tapa").returncode == 0
    assert hooks.run(netns, "ifdown-brx", "tapb").returncode == 0
    assert netns.link("brx")["address"] == mac

    # Control: a bridge whose address nobody pinned follows its lowest port.
    netns.bridge("brc")
    netns.ip("link", "set", "tapb", "master", "brc")
    assert netns.link("brc")["address"] == "02:00:00:00:00:01"


def test_stp_and_forward_delay_from_config(netns, hooks):
    hooks.write_config('[vlan.0]\nbridge = "br0"\nstp = true\nforward_delay = 4\n')
    netns.hold_taps("tap0")
    assert hooks.run(netns, "ifup-br0", "tap0").returncode == 0
    data = netns.link("br0")["linkinfo"]["info_data"]
    assert (data["stp_state"], data["forward_delay"]) == (1, 400)


def test_configured_mtu_is_pinned_and_given_to_the_tap(netns, hooks):
    hooks.write_config('[vlan.0]\nbridge = "br0"\nmtu = 9000\n')
    netns.hold_taps("tap0", "tap1")
    netns.ip("link", "set", "tap1", "mtu", "1280")
    assert hooks.run(netns, "ifup-br0", "tap0").returncode == 0
    assert hooks.run(netns, "ifup-br0", "tap1").returncode == 0
    assert netns.link("br0")["mtu"] == 9000
    assert netns.link("tap0")["mtu"] == 9000
    assert netns.link("tap1")["mtu"] == 9000


def test_tap_mtu_follows_an_existing_bridge(netns, hooks):
    netns.bridge("br0")
    netns.ip("link", "set", "br0", "mtu", "1400")
    hooks.write_config('[vlan.0]\nbridge = "br0"\n')
    netns.hold_taps("tap0", "tap1")
    netns.ip("link", "set", "tap1", "mtu", "1280")  # would lower an auto-MTU bridge
    assert hooks.run(netns, "ifup-br0", "tap0").returncode == 0
    assert hooks.run(netns, "ifup-br0", "tap1").returncode == 0
    assert netns.link("tap0")["mtu"] == 1400
    assert netns.link("tap1")["mtu"] == 1400
    assert netns.link("br0")["mtu"] == 1400


@pytest.mark.parametrize("kind", ["veth", "bridge", "lo", "tun"])
def test_non_tap_is_refused_and_nothing_changes(seed, hooks, kind):
    if kind == "veth":
        name = "lan0"
    elif kind == "bridge":
        name = "brother"
        seed.bridge(name)
    elif kind == "tun":
        name = "tun0"
        seed.hold_taps(name, tun=True)
    else:
        name = "lo"
    before = seed.snapshot()
    done = hooks.run(seed, "ifup-br0", name)
    assert_one_line_error(done, EX_DATAERR, f"ifup-br0: {name}:", "not a TAP")
    assert seed.snapshot() == before
    assert seed.link("br0") is None


def test_missing_tap(seed, hooks):
    done = hooks.run(seed, "ifup-br0", "tapnone")
    assert_one_line_error(done, EX_UNAVAILABLE, "tapnone does not exist")
    assert seed.link("br0") is None


@pytest.mark.parametrize("name", ["bad/name", "x" * 16, "a b", "a:b", ".."])
def test_invalid_interface_names(seed, hooks, name):
    before = seed.snapshot()
    done = hooks.run(seed, "ifup-br0", name)
    assert_one_line_error(done, EX_USAGE, "invalid interface name")
    assert seed.snapshot() == before


def test_hook_name_that_maps_to_no_segment(seed, hooks):
    seed.hold_taps("tap0")
    assert_one_line_error(hooks.run(seed, "ifup-br7", "tap0"), EX_USAGE, "no segment uses bridge br7")
    assert_one_line_error(hooks.run(seed, "ifup-vlan9", "tap0"), EX_USAGE, "no segment vlan.9")
    assert_one_line_error(hooks.run(seed, "qemu-ifup", "tap0"), EX_USAGE, "[defaults] vlan")


def test_config_problems(seed, hooks):
    seed.hold_taps("tap0")
    before = seed.snapshot()
    hooks.write_config('[vlan.0]\nbridge = "br0"\ntag = "x"\n')
    assert_one_line_error(hooks.run(seed, "ifup-br0", "tap0"), EX_CONFIG,
                          'vlan.0.tag: expected an integer 1..4094, got "x"')
    hooks.write_config("[vlan.0\nbridge = 1\n")
    assert_one_line_error(hooks.run(seed, "ifup-br0", "tap0"), EX_CONFIG, "invalid TOML")
    hooks.write_config(SEED_CONFIG, mode=0o666)
    assert_one_line_error(hooks.run(seed, "ifup-br0", "tap0"), EX_NOPERM, "chmod go-w")
    hooks.write_config(SEED_CONFIG)
    nobody = pwd.getpwnam("nobody")
    os.chown(hooks.config, nobody.pw_uid, nobody.pw_gid)
    assert_one_line_error(hooks.run(seed, "ifup-br0", "tap0"), EX_NOPERM, "chown root")
    hooks.config.unlink()
    assert_one_line_error(hooks.run(seed, "ifup-br0", "tap0"), EX_CONFIG, "not found")
    assert seed.snapshot() == before


def test_offload_check_enforce_refuses_and_changes_nothing(netns, hooks):
    netns.veth("eth0", "lan0", gro=False)
    hooks.write_config(SEED_CONFIG)
    netns.hold_taps("tap0")
    assert netns.offloads("eth0")["generic-receive-offload"] == "off"
    before = netns.snapshot()
    done = hooks.run(netns, "ifup-br0", "tap0")
    assert_one_line_error(done, EX_UNAVAILABLE, "uplink eth0 has GRO disabled",
                          "ethtool -K eth0 gro on", 'offload_check = "warn"')
    assert netns.snapshot() == before


def test_offload_check_warn_and_off(netns, hooks):
    netns.veth("eth0", "lan0", gro=False)
    netns.hold_taps("tap0", "tap1")
    hooks.write_config('[defaults]\noffload_check = "warn"\n' + SEED_CONFIG)
    done = hooks.run(netns, "ifup-br0", "tap0")
    assert done.returncode == 0
    assert "warning: uplink eth0 has GRO disabled" in done.stderr
    assert any("warning: uplink eth0 has GRO disabled" in l for l in hooks.log_lines())
    assert netns.master_of("tap0") == "br0"

    hooks.write_config('[defaults]\noffload_check = "off"\n' + SEED_CONFIG)
    done = hooks.run(netns, "ifup-br0", "tap1")
    assert (done.returncode, done.stderr) == (0, "")
    assert netns.master_of("tap1") == "br0"


def test_addressed_uplink_is_not_enslaved_unless_allowed(netns, hooks):
    netns.veth("eth0", "lan0")
    netns.ip("addr", "add", "192.0.2.5/24", "dev", "eth0")
    netns.hold_taps("tap0")
    hooks.write_config('[vlan.0]\nbridge = "br0"\nuplink = "eth0"\n')
    before = netns.snapshot()
    assert_one_line_error(hooks.run(netns, "ifup-br0", "tap0"), EX_UNAVAILABLE,
                          "192.0.2.5/24", "allow_addressed_uplink")
    assert netns.snapshot() == before
    hooks.write_config('[vlan.0]\nbridge = "br0"\nuplink = "eth0"\nallow_addressed_uplink = true\n')
    assert hooks.run(netns, "ifup-br0", "tap0").returncode == 0
    assert netns.master_of("eth0") == "br0"


def test_a_failure_after_the_bridge_was_created_deletes_it_again(netns, hooks):
    """Nothing half-built: a TUN (layer 3) cannot be a bridge port, and the kernel says
    so only after the bridge exists."""
    netns.hold_taps("tap0")
    netns.hold_taps("tun0", tun=True)
    hooks.write_config('[vlan.0]\nbridge = "br0"\nuplink = "tun0"\noffload_check = "off"\n')
    before = netns.snapshot()
    done = hooks.run(netns, "ifup-br0", "tap0")
    assert_one_line_error(done, EX_OSERR, "'ip link set dev tun0 master br0' failed: "
                                          "Invalid argument")
    assert netns.snapshot() == before
    assert hooks.logged_commands("ifup", "tap0")[-1] == "ip link del dev br0 (undo)"


def test_missing_uplink_and_create_false(netns, hooks):
    netns.hold_taps("tap0")
    hooks.write_config('[vlan.0]\nbridge = "br0"\nuplink = "eth9"\n')
    assert_one_line_error(hooks.run(netns, "ifup-br0", "tap0"), EX_UNAVAILABLE,
                          "uplink eth9 does not exist")
    hooks.write_config('[vlan.0]\nbridge = "br0"\ncreate = false\n')
    assert_one_line_error(hooks.run(netns, "ifup-br0", "tap0"), EX_UNAVAILABLE,
                          "bridge br0 does not exist", "qemu-ifhooks up 0")
    assert netns.link("br0") is None


def test_ifdown_detaches(seed, hooks):
    seed.hold_taps("tap0")
    assert hooks.run(seed, "ifup-br0", "tap0").returncode == 0
    done = hooks.run(seed, "ifdown-br0", "tap0")
    assert (done.returncode, done.stderr) == (0, "")
    tap = seed.link("tap0")
    assert tap.get("master") is None and "UP" not in flags(tap)
    assert seed.ports("br0") == ["eth0"]
    again = hooks.run(seed, "ifdown-br0", "tap0")
    assert (again.returncode, again.stderr) == (0, "")


def test_ifdown_of_a_vanished_tap_succeeds(seed, hooks):
    holder = seed.hold_taps("tap0")
    assert hooks.run(seed, "ifup-br0", "tap0").returncode == 0
    seed.release(holder)  # QEMU closed the fd: the kernel deleted the TAP
    assert seed.link("tap0") is None
    done = hooks.run(seed, "ifdown-br0", "tap0")
    assert (done.returncode, done.stderr) == (0, "")
    assert any("action=ifdown" in l and "result=ok" in l for l in hooks.log_lines())


def test_ifdown_leaves_a_tap_on_another_bridge_alone(seed, hooks):
    seed.bridge("brother")
    seed.hold_taps("tap0")
    seed.ip("link", "set", "tap0", "master", "brother", "up")
    done = hooks.run(seed, "ifdown-br0", "tap0")
    assert done.returncode == 0
    assert seed.master_of("tap0") == "brother"
    assert "UP" in flags(seed.link("tap0"))


def test_ifdown_refuses_non_tap(seed, hooks):
    seed.bridge("br0")
    seed.ip("link", "set", "eth0", "master", "br0")
    done = hooks.run(seed, "ifdown-br0", "eth0")
    assert_one_line_error(done, EX_DATAERR, "not a TAP")
    assert seed.master_of("eth0") == "br0"


def as_nobody(hooks, name):
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            str(hooks.entry(name))]


def test_ifdown_after_privilege_drop_exits_zero(seed, hooks):
    seed.hold_taps("tap0")
    assert hooks.run(seed, "ifup-br0", "tap0").returncode == 0
    hooks.log.touch()
    os.chmod(hooks.log, 0o666)
    done = seed.run(*as_nobody(hooks, "ifdown-br0"), "tap0", env=hooks.env())
    assert (done.returncode, done.stderr) == (0, "")
    assert seed.master_of("tap0") == "br0"  # the kernel refused; QEMU's close will do it
    assert any("no CAP_NET_ADMIN" in l for l in hooks.log_lines())


def test_ifup_without_privilege_is_refused(seed, hooks):
    seed.hold_taps("tap0")
    done = seed.run(*as_nobody(hooks, "ifup-br0"), "tap0", env=hooks.env())
    assert_one_line_error(done, EX_NOPERM)
    assert seed.link("br0") is None


def wait_until_locked(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except (FileNotFoundError, BlockingIOError) as e:
            if isinstance(e, BlockingIOError):
                return True
        time.sleep(0.05)
    return False


def test_lock_timeout(seed, hooks):
    seed.hold_taps("tap0")
    netns_inode = os.stat(f"/run/netns/{seed.name}").st_ino
    lock = f"/run/qemu-ifhooks/{netns_inode}-br0.lock"
    os.makedirs("/run/qemu-ifhooks", exist_ok=True)
    holder = seed.popen("flock", "--exclusive", lock, "sleep", "30")
    seed.holders.append(holder)
    assert wait_until_locked(lock)
    done = hooks.run(seed, "ifup-br0", "tap0", QEMU_IFHOOKS_LOCK_TIMEOUT="1")
    assert_one_line_error(done, EX_TEMPFAIL, "could not take the shared lock for br0")
    assert seed.link("br0") is None


def test_hot_path_imports_no_pyroute2(seed, hooks):
    seed.hold_taps("tap0")
    assert hooks.run(seed, "ifup-br0", "tap0").returncode == 0  # builds br0
    traced = {"PYTHONPROFILEIMPORTTIME": "1"}
    for name in ("ifdown-br0", "ifup-br0"):
        done = hooks.run(seed, name, "tap0", **traced)
        assert done.returncode == 0
        imported = imported_modules(done.stderr)
        assert "qemu_ifhooks.netlink" in imported  # the trace works
        assert not [m for m in imported if m.split(".")[0] == "pyroute2"], imported


@pytest.mark.parametrize("mtu", [1500, 9000])
def test_configured_mtu_stays_when_a_smaller_port_joins_later(netns, hooks, mtu):
    """Pinned means pinned even when it equals a new bridge's default: the kernel only
    marks an MTU as the user's when setting it changes it."""
    hooks.write_config(f'[vlan.0]\nbridge = "br0"\nmtu = {mtu}\n')
    netns.hold_taps("tap0")
    assert hooks.run(netns, "ifup-br0", "tap0").returncode == 0
    netns.ip("link", "add", "name", "small", "mtu", "1400", "type", "veth", "peer", "name", "smallp")
    netns.ip("link", "set", "small", "master", "br0")  # an admin adds a port by hand
    assert netns.link("br0")["mtu"] == mtu


def imported_modules(stderr: str) -> list:
    """The modules a process imported, from its -X importtime trace."""
    return [line.split("|")[-1].strip() for line in stderr.splitlines()
            if line.startswith("import time:") and not line.endswith("imported package")]


def test_config_cache_spares_the_parser_and_follows_every_edit(netns, hooks):
    """The first hook on an unchanged config parses it and leaves the cache; later
    ones do not import the TOML parser; an edit straight after is obeyed at once."""
    from qemu_ifhooks.configcache import RACY_SECONDS

    hooks.write_config('[vlan.0]\nbridge = "br0"\n')
    netns.hold_taps("tap0")
    time.sleep(RACY_SECONDS + 0.1)
    traced = {"PYTHONPROFILEIMPORTTIME": "1"}
    runs = [hooks.run(netns, name, "tap0", **traced)
            for name in ("ifup-vlan0", "ifdown-vlan0", "ifup-vlan0")]
    assert [done.returncode for done in runs] == [0, 0, 0], [done.stderr for done in runs]
    parsed = ["tomllib" in imported_modules(done.stderr) for done in runs]
    assert parsed == [True, False, False]
    assert netns.master_of("tap0") == "br0"

    # The same size, rewritten in place: only the file's timestamps tell.
    hooks.run(netns, "ifdown-vlan0", "tap0")
    with open(hooks.config, "r+") as f:
        f.write('[vlan.0]\nbridge = "br9"\n')
    done = hooks.run(netns, "ifup-vlan0", "tap0", **traced)
    assert done.returncode == 0, done.stderr
    assert "tomllib" in imported_modules(done.stderr)
    assert netns.master_of("tap0") == "br9"


def packaged_entry(hooks, libdir=None, name: str = "packaged") -> str:
    """packaging/qemu-ifhook as the packages install it (its library directory filled
    in: this checkout, else `libdir`), run through an ifup-br0 symlink."""
    from conftest import ROOT

    program = hooks.dir / f"qemu-ifhook-{name}"
    program.write_text((ROOT / "packaging" / "qemu-ifhook").read_text()
                       .replace("@PYTHONDIR@", str(libdir or ROOT)))
    os.chmod(program, 0o755)
    entry = hooks.dir / name / "ifup-br0"
    entry.parent.mkdir()
    entry.symlink_to(program)
    return str(entry)


def installed_entry(hooks) -> str:
    """The entry `qemu-ifhooks install` writes in a pip/venv installation (this
    checkout, installed editable in the test venv)."""
    from conftest import CLI, sh

    sh(str(CLI), "install", "--dir", str(hooks.dir / "installed"), env=hooks.env())
    return str(hooks.dir / "installed" / "ifup-br0")


@pytest.mark.parametrize("make_entry", [packaged_entry, installed_entry],
                         ids=["packaged", "install"])
def test_hook_entry_runs_isolated_on_the_standard_library(netns, hooks, make_entry, tmp_path):
    """Both install forms, run as QEMU would: they attach, run no sitecustomize.py from
    QEMU's PYTHONPATH, and import nothing from outside the standard library and the
    project (no site, so no .pth file; no pyroute2)."""
    from qemu_ifhooks.configcache import RACY_SECONDS

    hooks.write_config('[vlan.0]\nbridge = "br0"\n')
    entry = make_entry(hooks)
    time.sleep(RACY_SECONDS + 0.1)  # old enough to be cached, as on a host: the hot path
    netns.hold_taps("tap0")
    outside = tmp_path / "pythonpath"
    outside.mkdir()
    marker = tmp_path / "sitecustomize-ran"
    (outside / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w')\n")
    interpreter = open(entry).readline()[2:].split()[0]
    env = hooks.env(PYTHONPATH=str(outside), PYTHONSTARTUP="/nonexistent")
    assert netns.run(interpreter, "-c", "pass", env=env).returncode == 0
    assert marker.exists()  # control: what a console script's start-up would run
    marker.unlink()

    done = netns.run(entry, "tap0", env=env)
    assert (done.returncode, done.stderr) == (0, "")
    assert netns.master_of("tap0") == "br0"
    assert not marker.exists()

    # The same entry under -X importtime (its #! line, spelled out).
    assert open(entry).readline().rstrip("\n") == f"#!{interpreter} -IS"
    hooks.run(netns, "ifdown-br0", "tap0")
    done = netns.run(interpreter, "-IS", "-X", "importtime", entry, "tap0", env=hooks.env())
    assert done.returncode == 0, done.stderr
    assert netns.master_of("tap0") == "br0"
    imported = imported_modules(done.stderr)
    # the hook path from its one-file cache (test_hookcode.py), built by the run above
    assert "qemu_ifhooks.hookcode" in imported and "qemu_ifhooks.netlink" not in imported
    assert "site" not in imported
    assert "os" not in imported and "tomllib" not in imported  # env.py, configcache.py
    foreign = [m for m in imported
               if m.split(".")[0] != "qemu_ifhooks" and m.split(".")[0] not in sys.stdlib_module_names]
    assert not foreign, foreign



def test_launcher_puts_the_standard_library_first_again(netns, hooks, tmp_path):
    """The packaged launcher looks for the package in its directory first, then puts that
    directory last on the path again: a module there named like a standard one is never
    what the hook imports later (here tomllib, which a hook imports for a config it has
    not cached yet)."""
    import shutil

    from conftest import ROOT

    libdir = tmp_path / "lib"
    shutil.copytree(ROOT / "qemu_ifhooks", libdir / "qemu_ifhooks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    marker = tmp_path / "shadow-ran"
    (libdir / "tomllib.py").write_text(f"open({str(marker)!r}, 'w')\n")
    entry = packaged_entry(hooks, libdir, "shadowed")
    hooks.write_config('[vlan.0]\nbridge = "br0"\n')  # new: parsed, not read from a cache
    netns.hold_taps("tap0")

    done = netns.run(entry, "tap0", env=hooks.env())
    assert (done.returncode, done.stderr) == (0, "")
    assert netns.master_of("tap0") == "br0"
    assert not marker.exists()
