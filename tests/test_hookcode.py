"""The hook path's code cache (hookcode.py): a hook run by the packaged launcher loads
its modules from one precompiled file, rebuilds that file when a source changes or it
is damaged, never runs one that someone else could have written, and imports as usual
where it cannot write it.

Each test runs a private copy of the package, so the cache under test is its own. What
a hook imported is read from the interpreter's own `-X importtime` trace; what it did,
from `ip -j`."""

from __future__ import annotations

import marshal
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

CONFIG = '[vlan.0]\nbridge = "br0"\n'
OWN_MODULES = ("netlink", "config", "actions", "hook")  # a few of what the cache holds


class Copy:
    """The package copied to a directory of its own, with the packaged launcher."""

    def __init__(self, base: Path):
        self.lib = base / "lib"
        self.package = self.lib / "qemu_ifhooks"
        shutil.copytree(ROOT / "qemu_ifhooks", self.package,
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.lib.chmod(0o755)
        base.chmod(0o755)
        self.launcher = base / "qemu-ifhook"
        self.launcher.write_text((ROOT / "packaging" / "qemu-ifhook").read_text()
                                 .replace("@PYTHONDIR@", str(self.lib)))
        self.launcher.chmod(0o755)
        for name in ("ifup-br0", "ifdown-br0"):
            (base / name).symlink_to(self.launcher)
        self.base = base
        self.cache = self.package / "__pycache__" / f"hookcode.{sys.implementation.cache_tag}.bundle"

    def run(self, netns, hooks, action: str, tap: str = "tap0", prefix=()) -> list:
        """Run ifup-br0/ifdown-br0 under -X importtime; the package modules that were
        imported the usual way."""
        done = netns.run(*prefix, "/usr/bin/python3", "-IS", "-X", "importtime",
                         str(self.base / f"{action}-br0"), tap, env=hooks.env())
        assert (done.returncode, [line for line in done.stderr.splitlines()
                                  if not line.startswith("import time:")]) == (0, []), done.stderr
        return [line.split("|")[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:") and "qemu_ifhooks." in line]


@pytest.fixture
def copy(tmp_path_factory):
    base = tmp_path_factory.mktemp("hookcode")
    yield Copy(base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def aged_config(tmp_path_factory) -> Path:
    """The config, old enough for the hooks to cache it (configcache.py), as on a host:
    what a hook imports then is the hook path alone."""
    from qemu_ifhooks.configcache import RACY_SECONDS

    directory = tmp_path_factory.mktemp("config")
    directory.chmod(0o755)
    path = directory / "qemu-ifhooks.toml"
    path.write_text(CONFIG + 'uplink = "eth0"\n')
    path.chmod(0o644)
    time.sleep(RACY_SECONDS + 0.1)
    return path


@pytest.fixture
def lan(netns, hooks, aged_config):
    netns.veth("eth0", "lan0")
    hooks.config = aged_config
    netns.hold_taps("tap0")
    return netns


def attached(netns) -> bool:
    return netns.master_of("tap0") == "br0"


def test_the_hook_path_loads_from_one_file(copy, lan, hooks):
    """The first hook builds the cache; the next ones import only the launcher's module
    the usual way, and attach and detach as ever."""
    assert not copy.cache.exists()
    copy.run(lan, hooks, "ifup")
    assert attached(lan)
    info = copy.cache.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o644)

    for action in ("ifdown", "ifup"):
        imported = copy.run(lan, hooks, action)
        assert imported == ["qemu_ifhooks.hookcode"], imported
        assert attached(lan) == (action == "ifup")
    assert copy.cache.stat().st_mtime_ns == info.st_mtime_ns  # read, not rewritten


def test_a_changed_source_is_rebuilt_and_obeyed(copy, lan, hooks):
    copy.run(lan, hooks, "ifup")
    built = copy.cache.read_bytes()
    marker = copy.base / "edited-log-ran"
    with open(copy.package / "log.py", "a") as f:  # an edit, as an upgrade makes one
        f.write(f"\nopen({str(marker)!r}, 'w').close()\n")
    copy.run(lan, hooks, "ifdown")
    assert marker.exists() and not attached(lan)
    assert copy.cache.read_bytes() != built
    marker.unlink()
    assert copy.run(lan, hooks, "ifup") == ["qemu_ifhooks.hookcode"]
    assert marker.exists() and attached(lan)  # the edited code, from the cache


def test_the_cache_leaves_out_what_only_a_type_checker_reads(copy):
    """No function run from the cache has annotations, and running it imports no
    __future__; the same modules imported the usual way have both."""
    script = (f"import sys\nsys.path.append({str(copy.lib)!r})\n"
              "import qemu_ifhooks.hookcode as h, qemu_ifhooks.hookbuild as b\nh.run(b.build())\n"
              "from qemu_ifhooks import netlink, plan, record\n"
              "print(len(netlink.Netlink.set_link.__annotations__), len(plan.plan_attach.__annotations__),"
              " '__annotations__' in vars(record.Record), '__future__' in sys.modules)\n")
    done = subprocess.run(["/usr/bin/python3", "-IS", "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == ["0", "0", "False", "False"]
    usual = subprocess.run(["/usr/bin/python3", "-IS", "-c", script.replace("h.run(b.build())", "")],
                           capture_output=True, text=True)
    assert (usual.returncode, usual.stderr) == (0, "")
    assert usual.stdout.split()[2:] == ["True", "True"] and "0" not in usual.stdout.split()[:2]


def poisoned(copy) -> Path:
    """Rewrite the cache so that its `hook` module only leaves a marker: valid in every
    other way, so that only the trust check can keep it from running."""
    marker = copy.base / "poison-ran"
    data = copy.cache.read_bytes()
    form, sources, modules = marshal.loads(data[4:])
    evil = compile(f"open({str(marker)!r}, 'w').close()\ndef main(config=None): pass\n",
                   "evil", "exec")
    modules = tuple((name, evil if name == "hook" else code) for name, code in modules)
    copy.cache.write_bytes(data[:4] + marshal.dumps((form, sources, modules)))
    return marker


@pytest.mark.parametrize("how", ["world-writable", "group-writable", "someone-elses"])
def test_a_cache_someone_else_could_write_is_never_run(copy, lan, hooks, how):
    copy.run(lan, hooks, "ifup")
    copy.run(lan, hooks, "ifdown")
    marker = poisoned(copy)
    if how == "someone-elses":
        os.chown(copy.cache, 65534, 65534)
    else:
        copy.cache.chmod(0o646 if how == "world-writable" else 0o664)
    copy.run(lan, hooks, "ifup")
    assert not marker.exists() and attached(lan)
    info = copy.cache.stat()  # replaced by a sound one
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o644)
    assert copy.run(lan, hooks, "ifdown") == ["qemu_ifhooks.hookcode"]
    assert not marker.exists() and not attached(lan)


def test_the_poisoned_control_does_run(copy, lan, hooks):
    """Control for the test above: the same file, owned by root and 0644, is run."""
    copy.run(lan, hooks, "ifup")
    marker = poisoned(copy)
    copy.run(lan, hooks, "ifdown")
    assert marker.exists() and attached(lan)  # its `hook` did nothing


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other-magic",
                                    "other-format", "a-directory"])
def test_a_damaged_cache_is_rebuilt(copy, lan, hooks, damage):
    copy.run(lan, hooks, "ifup")
    data = copy.cache.read_bytes()
    if damage == "a-directory":
        copy.cache.unlink()
        copy.cache.mkdir()
    else:
        copy.cache.write_bytes({
            "truncated": data[:len(data) // 2],
            "garbage": data[:4] + random.Random(12).randbytes(4096),
            "empty": b"",
            "other-magic": b"\x00\x00\r\n" + data[4:],
            "other-format": data[:4] + marshal.dumps((99,) + marshal.loads(data[4:])[1:]),
        }[damage])
    copy.run(lan, hooks, "ifdown")
    assert not attached(lan)
    if damage == "a-directory":  # not ours to remove: imports as usual meanwhile
        assert copy.cache.is_dir()
        return
    rebuilt = copy.cache.read_bytes()
    assert rebuilt[:4] == data[:4] and marshal.loads(rebuilt[4:])[1] == marshal.loads(data[4:])[1]
    assert copy.run(lan, hooks, "ifup") == ["qemu_ifhooks.hookcode"]
    assert attached(lan)


def test_a_read_only_package_imports_as_usual(copy, lan, hooks):
    """A package on a read-only file system (or a directory the hook may not write):
    no cache, no error, the modules imported one by one."""
    shutil.rmtree(copy.package / "__pycache__", ignore_errors=True)
    script = (f"mount --bind {copy.lib} {copy.lib} && mount -o remount,bind,ro {copy.lib} "
              f"&& exec \"$@\"")
    prefix = ("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh")
    imported = copy.run(lan, hooks, "ifup", prefix=prefix)
    assert attached(lan)
    assert "qemu_ifhooks.netlink" in imported and "qemu_ifhooks.hook" in imported
    assert not copy.cache.exists()


def test_many_hooks_building_at_once_all_attach(copy, netns, hooks, aged_config):
    """Hooks that start together on a missing cache each build it; every one attaches,
    and one complete file is left, with no temporary files."""
    netns.veth("eth0", "lan0")
    hooks.config = aged_config
    taps = [f"tap{i}" for i in range(12)]
    netns.hold_taps(*taps)
    started = [netns.popen(copy.base / "ifup-br0", tap, env=hooks.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE) for tap in taps]
    for process in started:
        out, err = process.communicate(timeout=60)
        assert (process.returncode, err) == (0, b""), err
    assert all(netns.master_of(tap) == "br0" for tap in taps)
    assert sorted(p.name for p in copy.cache.parent.iterdir() if "bundle" in p.name) == \
        [copy.cache.name]
    imported = copy.run(netns, hooks, "ifdown", "tap3")
    assert imported == ["qemu_ifhooks.hookcode"]
