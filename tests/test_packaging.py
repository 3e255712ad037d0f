"""The packages, as users get them.

The .deb: built by `make deb`, lintian-clean, installed with apt-get (dependencies from
Debian), then exercised through the installed files only: a clean environment, a
working directory outside the checkout, Debian's /usr/bin/python3. It is purged at
the end (also when a test fails), and the purge must leave nothing behind.

The .rpm: the spec expands with `rpmspec -P`, `make rpm` builds it with the CI stand-ins
for Fedora's macros, rpmlint is clean with the project's config, and the payload runs.

`pip install .` into a fresh virtual environment gives the same two programs."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from conftest import ROOT, SEED_CONFIG, cannot_run, debian_release, require_root, sh
from qemu_ifhooks import __version__
from qemu_ifhooks.cli import build_parser
from test_man import subcommands

PACKAGE = "qemu-ifhooks"
DEB = ROOT / "dist" / f"{PACKAGE}_{__version__}_all.deb"
SPEC = ROOT / "packaging" / "rpm" / f"{PACKAGE}.spec"
CI_MACROS = ROOT / "packaging" / "rpm" / "ci.macros"
RPMLINT_CONFIG = ROOT / "packaging" / "rpm" / "rpmlint.toml"
RPM = ROOT / "dist" / f"{PACKAGE}-{__version__}-1.noarch.rpm"

CLI = "/usr/sbin/qemu-ifhooks"
HOOK = "/usr/libexec/qemu-ifhooks/qemu-ifhook"
BRIDGE_HELPER = "/usr/libexec/qemu-ifhooks/bridge-helper"
BROKER_UNITS = ("qemu-ifhooks-broker.socket", "qemu-ifhooks-broker.service")
CONFFILE = "/etc/qemu-ifhooks/qemu-ifhooks.toml"

# Where the release wants system units (the oracle is the release, not the build
# system the package takes the path from): /lib up to Debian 12; from Debian 13 on,
# merged /usr (lintian: aliased-location for /lib/systemd/system).
UNIT_DIRS = ["/lib/systemd/system", "/usr/lib/systemd/system"]
UNIT_DIR = UNIT_DIRS[0] if 0 < debian_release() <= 12 else UNIT_DIRS[1]
UNIT = f"{UNIT_DIR}/qemu-ifhooks.service"
DIST_PACKAGES = "/usr/lib/python3/dist-packages/"
HOOK_CODE_CACHE = f"{DIST_PACKAGES}qemu_ifhooks/__pycache__/hookcode." \
                  f"{sys.implementation.cache_tag}.bundle"  # written by the first hook
# Nothing of the checkout or of a virtualenv: what a user's root shell has.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
APT_ENV = dict(CLEAN_ENV, DEBIAN_FRONTEND="noninteractive")
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=120"]


def require_tools(*pairs: str) -> None:
    """require_tools("tool", "package", ...)"""
    for tool, package in zip(pairs[::2], pairs[1::2]):
        if shutil.which(tool) is None:
            cannot_run(f"needs {tool} (apt-get install {package}; make deps)")


def assert_launcher(entry: Path, interpreter: str, libdir: str) -> None:
    """An entry `qemu-ifhooks install` wrote: it starts `interpreter` isolated (-IS, as
    the packaged hook program does) on the library directory `libdir`."""
    text = entry.read_text()
    assert not entry.is_symlink() and os.access(entry, os.X_OK), entry
    assert text.splitlines()[0] == f"#!{interpreter} -IS", text
    assert f"\nsys.path.append({libdir!r})\n" in text, text


def version_of_changelog() -> str:
    first = (ROOT / "packaging" / "debian" / "changelog").read_text().splitlines()[0]
    return re.match(r"qemu-ifhooks \(([^)]+)\)", first).group(1)


def test_versions_agree():
    """One version: the package's, the Debian changelog's and the spec's."""
    spec_version = re.search(r"^Version:\s*(\S+)", SPEC.read_text(), re.MULTILINE).group(1)
    assert version_of_changelog() == spec_version == __version__


# --- the .deb ------------------------------------------------------------------------

def build_with_make(target: str, artefact: Path) -> None:
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), target],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"make {target} failed:\n{done.stdout[-4000:]}"
    assert artefact.is_file(), f"make {target} did not leave {artefact}:\n{done.stdout}"


def dpkg_status(package: str) -> str:
    done = sh("dpkg-query", "-W", "-f=${db:Status-Abbrev}", package, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


class InstalledDeb:
    """The .deb installed on this machine for the tests of this module; purged by
    the finalizer, whatever happened."""

    def __init__(self, deb: Path):
        self.deb = deb
        listing = sh("dpkg-deb", "-c", deb).stdout.splitlines()
        self.paths = [os.path.normpath("/" + line.split(None, 5)[5].split(" -> ")[0])
                      for line in listing]
        # What existed before the package came: only the rest may go at purge.
        self.existed_before = {p for p in self.paths if os.path.lexists(p)}
        self.listed: List[str] = []

    def installed(self) -> bool:
        return dpkg_status(PACKAGE).startswith("ii")

    def install(self) -> None:
        done = subprocess.run(APT + ["install", str(self.deb)], env=APT_ENV,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        assert done.returncode == 0, f"apt-get install {self.deb} failed:\n{done.stdout}"
        assert self.installed()
        self.listed = [os.path.normpath(p) for p in sh("dpkg", "-L", PACKAGE).stdout.split("\n")
                       if p.strip()]

    def purge(self) -> subprocess.CompletedProcess:
        return subprocess.run(APT + ["purge", PACKAGE], env=APT_ENV, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def precondition_for_installing() -> None:
    require_root()
    require_tools("dpkg-buildpackage", "dpkg-dev", "dh", "debhelper", "apt-get", "apt",
                  "lintian", "lintian", "man", "man-db")
    if dpkg_status(PACKAGE):
        cannot_run(f"{PACKAGE} is already installed (or not purged) on this machine; "
                   f"the test installs and purges it: 'apt-get purge {PACKAGE}' first")
    if os.path.lexists("/etc/qemu-ifhooks"):
        cannot_run("/etc/qemu-ifhooks exists and is not the package's; the test's purge "
                   "would remove hook entries from it")
    for cfg in Path("/etc/dpkg/dpkg.cfg.d").glob("*"):
        if re.search(r"^path-exclude=/usr/share/man", cfg.read_text(), re.MULTILINE):
            cannot_run(f"{cfg} keeps dpkg from installing man pages")


@pytest.fixture(scope="module")
def deb_package(request) -> InstalledDeb:
    precondition_for_installing()
    # One installing test run at a time on this machine (apt and /etc are shared).
    lock = open("/run/lock/qemu-ifhooks-packaging-test.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    request.addfinalizer(lock.close)
    build_with_make("deb", DEB)
    package = InstalledDeb(DEB)

    def purge_if_installed():
        if dpkg_status(PACKAGE):
            package.purge()
    request.addfinalizer(purge_if_installed)
    return package


@pytest.fixture
def deb(deb_package) -> InstalledDeb:
    """The package, installed (again, if a test before purged it)."""
    if not deb_package.installed():
        deb_package.install()
    return deb_package


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working directory outside the checkout, for running the installed programs."""
    assert ROOT not in tmp_path.parents
    return tmp_path


def run_clean(*argv: str, cwd: Path, check: bool = True, **env: str):
    return sh(*argv, cwd=cwd, env=dict(CLEAN_ENV, **env), check=check)


@pytest.mark.root
def test_deb_is_lintian_clean(deb_package):
    """The binary and the source package, the .changes that lists them."""
    arch = sh("dpkg", "--print-architecture").stdout.strip()
    changes = ROOT / "dist" / f"{PACKAGE}_{__version__}_{arch}.changes"
    done = sh("lintian", "--fail-on", "error,warning", "--display-info", changes, check=False,
              env=dict(CLEAN_ENV))
    tags = [line for line in done.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert done.returncode == 0 and not tags, done.stdout + done.stderr


@pytest.mark.root
def test_deb_layout(deb):
    listed = set(deb.listed)
    for path in (CLI, HOOK, BRIDGE_HELPER, CONFFILE, UNIT,
                 *(f"{UNIT_DIR}/{unit}" for unit in BROKER_UNITS),
                 "/usr/share/man/man8/qemu-ifhooks.8.gz",
                 "/usr/share/man/man5/qemu-ifhooks.toml.5.gz",
                 DIST_PACKAGES + "qemu_ifhooks/hook.py"):
        assert path in listed, f"{path} is not in the package"
    # QEMU's default scripts belong to qemu-system-common; no second program on PATH.
    wrong_unit = [f"{d}/qemu-ifhooks.service" for d in UNIT_DIRS if d != UNIT_DIR]
    for path in ["/etc/qemu-ifup", "/etc/qemu-ifdown", "/usr/bin/qemu-ifhook",
                 "/usr/bin/qemu-ifhooks", "/usr/sbin/qemu-ifhook",
                 "/usr/bin/qemu-ifhooks-bridge-helper"] + wrong_unit:
        assert path not in listed, f"the package ships {path}"
    conffiles = sh("dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout.split()
    assert CONFFILE in conffiles
    st = os.stat(CONFFILE)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
    assert os.stat(HOOK).st_mode & 0o777 == 0o755
    program = Path(HOOK).read_text()
    assert program.splitlines()[0] == "#!/usr/bin/python3 -IS"
    assert 'sys.path.append("/usr/lib/python3/dist-packages")' in program
    assert "@PYTHONDIR@" not in program
    assert os.stat(BRIDGE_HELPER).st_mode & 0o7777 == 0o755  # no setuid: the broker is root
    helper = Path(BRIDGE_HELPER).read_text()
    assert helper.splitlines()[0] == "#!/usr/bin/python3 -IS"
    assert 'sys.path.append("/usr/lib/python3/dist-packages")' in helper


@pytest.mark.root
def test_installed_broker_units_are_valid_and_not_enabled(deb, outside):
    require_tools("systemd-analyze", "systemd")
    paths = [f"{UNIT_DIR}/{unit}" for unit in BROKER_UNITS]
    done = run_clean("systemd-analyze", "verify", *paths, cwd=outside, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    socket_unit = Path(paths[0]).read_text().splitlines()
    assert "ListenStream=/run/qemu-ifhooks/broker.sock" in socket_unit
    assert "ExecStart=/usr/sbin/qemu-ifhooks broker" in Path(paths[1]).read_text().splitlines()
    for unit in BROKER_UNITS:
        state = run_clean("systemctl", "is-enabled", unit, cwd=outside,
                          check=False).stdout.strip()
        assert state in ("disabled", "indirect"), (unit, state)
    # The helper without a broker: one line, exit 69 (QEMU shows it).
    done = run_clean(BRIDGE_HELPER, "--fd=0", "--br=br0", cwd=outside, check=False,
                     QEMU_IFHOOKS_BROKER=str(outside / "none.sock"))
    assert done.returncode == 69 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("qemu-ifhooks: bridge-helper: no qemu-ifhooks broker")


@pytest.mark.root
def test_installed_programs_run_from_dist_packages(deb, outside):
    assert run_clean("qemu-ifhooks", "--version", cwd=outside).stdout.strip() == \
        f"qemu-ifhooks {__version__}"
    assert run_clean("sh", "-c", "command -v qemu-ifhooks", cwd=outside).stdout.strip() == CLI
    found = run_clean("/usr/bin/python3", "-c",
                      "import qemu_ifhooks, pyroute2; print(qemu_ifhooks.__file__); "
                      "print(pyroute2.__file__)", cwd=outside).stdout.split()
    assert all(path.startswith(DIST_PACKAGES) for path in found), found
    # The hook program without a TAP argument: the one-line usage error, exit 64.
    done = run_clean(HOOK, cwd=outside, check=False)
    assert done.returncode == 64 and done.stderr.startswith("qemu-ifhooks: "), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.root
def test_installed_man_pages(deb, outside):
    assert run_clean("man", "-w", "qemu-ifhooks", cwd=outside).stdout.strip() == \
        "/usr/share/man/man8/qemu-ifhooks.8.gz"
    assert run_clean("man", "-w", "5", "qemu-ifhooks.toml", cwd=outside).stdout.strip() == \
        "/usr/share/man/man5/qemu-ifhooks.toml.5.gz"
    page = run_clean("man", "qemu-ifhooks", cwd=outside, MANWIDTH="80", MANPAGER="cat").stdout
    assert "qemu-ifhooks install" in page


@pytest.mark.root
def test_installed_unit_is_valid_and_not_enabled(deb, outside):
    require_tools("systemd-analyze", "systemd")
    done = run_clean("systemd-analyze", "verify", UNIT, cwd=outside, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    unit = Path(UNIT).read_text()
    for line in ("Type=oneshot", "RemainAfterExit=yes", "ExecStart=/usr/sbin/qemu-ifhooks up",
                 "After=network-online.target"):
        assert line in unit.splitlines(), line
    assert "libvirtd.service" in re.search(r"^Before=(.*)$", unit, re.MULTILINE).group(1)
    # The example config names eth0 and eth1: installing must not enable the unit.
    state = run_clean("systemctl", "is-enabled", "qemu-ifhooks.service", cwd=outside,
                      check=False).stdout.strip()
    assert state == "disabled", state


@pytest.mark.root
def test_installed_install_uses_the_shipped_config(deb, outside):
    entries = outside / "entries"
    done = run_clean("qemu-ifhooks", "install", "--dir", str(entries), cwd=outside)
    names = sorted(p.name for p in entries.iterdir())
    assert names == ["ifdown-br0", "ifdown-br1", "ifup-br0", "ifup-br1"], done.stdout
    for name in names:
        assert_launcher(entries / name, "/usr/bin/python3", DIST_PACKAGES.rstrip("/"))


@pytest.mark.root
def test_installed_hooks_attach_and_detach_in_a_namespace(deb, netns, hooks, outside):
    """The seed's two VLANs: installed entries (qemu-ifhooks install --dir) attach TAPs
    that a live process holds, as QEMU does, and detach them; up/down with the
    installed CLI and Debian's Python."""
    hooks.write_config(SEED_CONFIG)
    env = {"QEMU_IFHOOKS_CONFIG": str(hooks.config), "QEMU_IFHOOKS_LOG": str(hooks.log)}
    run_clean(CLI, "install", "--dir", str(hooks.dir), cwd=outside, **env)
    assert_launcher(hooks.dir / "ifup-br0", "/usr/bin/python3", DIST_PACKAGES.rstrip("/"))
    netns.veth("eth0", "lan0")
    netns.veth("eth1", "lan1")
    netns.hold_taps("tap0", "tap1")
    clean = dict(CLEAN_ENV, **env)

    for vlan, (tap, bridge, uplink) in enumerate([("tap0", "br0", "eth0"),
                                                   ("tap1", "br1", "eth1")]):
        done = netns.run(str(hooks.dir / f"ifup-{bridge}"), tap, env=clean, cwd=outside)
        assert done.returncode == 0, done.stderr
        assert netns.master_of(tap) == bridge and netns.master_of(uplink) == bridge
        assert "UP" in netns.link(tap)["flags"]
    for tap, bridge in [("tap0", "br0"), ("tap1", "br1")]:
        done = netns.run(str(hooks.dir / f"ifdown-{bridge}"), tap, env=clean, cwd=outside)
        assert done.returncode == 0, done.stderr
        assert netns.master_of(tap) is None
    assert any("action=ifup tap=tap0 bridge=br0" in line for line in hooks.log_lines())

    # The admin commands that read the kernel through pyroute2, with Debian's 0.7.
    commands = subcommands(build_parser())
    if "status" in commands:
        done = netns.run(CLI, "status", env=clean, cwd=outside)
        assert done.returncode == 0 and "br0" in done.stdout, done.stdout + done.stderr
    if "check" in commands:
        done = netns.run(CLI, "check", "--hook-dir", str(hooks.dir), env=clean, cwd=outside)
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, \
            done.stdout + done.stderr
        assert done.stdout.strip(), done.stderr

    done = netns.run(CLI, "down", env=clean, cwd=outside)
    assert done.returncode == 0, done.stderr
    assert netns.link("br0") is None and netns.link("br1") is None
    done = netns.run(CLI, "up", "1", env=clean, cwd=outside)
    assert done.returncode == 0, done.stderr
    assert netns.master_of("eth1") == "br1" and netns.link("br0") is None


@pytest.mark.root
def test_purge_leaves_nothing_behind(deb, outside):
    """Purge removes every file the package listed, its conffile and the entries
    `qemu-ifhooks install` wrote into /etc/qemu-ifhooks; directories go unless they
    were there before (or another package owns them)."""
    listed = list(deb.listed)
    run_clean("qemu-ifhooks", "install", cwd=outside)  # /etc/qemu-ifhooks/ifup-br0 ...
    assert_launcher(Path("/etc/qemu-ifhooks/ifup-br0"), "/usr/bin/python3",
                    DIST_PACKAGES.rstrip("/"))
    # A hook has run (libvirt's downscript after a failed start): its code cache exists.
    run_clean("/etc/qemu-ifhooks/ifdown-br0", "(null)", cwd=outside)
    assert os.path.exists(HOOK_CODE_CACHE)
    done = deb.purge()
    assert done.returncode == 0, done.stdout
    assert "not empty so not removed" not in done.stdout, done.stdout
    assert dpkg_status(PACKAGE) == "", "dpkg still knows the package after purge"
    left = []
    for path in listed:
        if not os.path.lexists(path) or path in deb.existed_before:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            if sh("dpkg-query", "-S", path, check=False).returncode == 0:
                continue  # another package's directory too
        left.append(path)
    assert not left, f"left behind after purge: {left}"
    assert not os.path.lexists(HOOK_CODE_CACHE)
    assert not os.path.lexists("/etc/qemu-ifhooks")
    assert not list(Path("/var/lib/systemd/deb-systemd-helper-enabled").glob("**/qemu-ifhooks*"))


# --- the .rpm ------------------------------------------------------------------------

def require_rpm_tools() -> None:
    require_tools("rpmbuild", "rpm", "rpmspec", "rpm", "rpmlint", "rpmlint",
                  "rpm2cpio", "rpm", "cpio", "cpio")


def test_rpm_spec_expands():
    require_rpm_tools()
    done = sh("rpmspec", "-P", "--load", CI_MACROS, SPEC)
    expanded = done.stdout
    assert done.stderr == "", done.stderr
    assert "%config(noreplace) /etc/qemu-ifhooks/qemu-ifhooks.toml" in expanded
    assert "%pyproject" not in expanded.replace("%files -f", ""), "unexpanded pyproject macro"
    # Fedora style: the spec itself uses the pyproject macros, not setup.py or pip.
    spec = SPEC.read_text()
    for macro in ("%pyproject_buildrequires", "%pyproject_wheel", "%pyproject_install",
                  "%pyproject_save_files", "%{pyproject_files}", "%config(noreplace)",
                  "%systemd_post", "%license"):
        assert macro in spec, macro


@pytest.fixture(scope="module")
def rpm_package() -> Path:
    require_rpm_tools()
    build_with_make("rpm", RPM)
    return RPM


def test_rpm_is_rpmlint_clean(rpm_package):
    srpm = rpm_package.parent / f"{PACKAGE}-{__version__}-1.src.rpm"
    done = sh("rpmlint", "-c", RPMLINT_CONFIG, SPEC, rpm_package, srpm, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors, 0 warnings" in done.stdout, done.stdout


def test_rpm_payload(rpm_package, tmp_path):
    files = set(sh("rpm", "-qlp", rpm_package).stdout.split())
    for path in ("/usr/sbin/qemu-ifhooks", HOOK, BRIDGE_HELPER, CONFFILE,
                 "/usr/lib/systemd/system/qemu-ifhooks.service",
                 *(f"/usr/lib/systemd/system/{unit}" for unit in BROKER_UNITS),
                 "/usr/share/man/man8/qemu-ifhooks.8.gz",
                 "/usr/share/man/man5/qemu-ifhooks.toml.5.gz"):
        assert path in files, path
    assert not files & {"/etc/qemu-ifup", "/etc/qemu-ifdown", "/usr/bin/qemu-ifhook"}
    flags = sh("rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm_package).stdout
    ghosts = [line.split()[0] for line in flags.splitlines() if line.split()[1:] == ["g"]]
    assert [path.rpartition("/")[2] for path in ghosts] == \
        [f"hookcode.{sys.implementation.cache_tag}.bundle"], ghosts  # the hook's code cache
    assert sh("rpm", "-qp", "--configfiles", rpm_package).stdout.split() == [CONFFILE]
    requires = sh("rpm", "-qp", "--requires", rpm_package).stdout
    assert re.search(r"^python3\.\d+dist\(pyroute2\) >= 0\.7$", requires, re.MULTILINE), requires
    # The payload runs: the CLI and the hook program from the unpacked tree.
    cpio = subprocess.run(f"rpm2cpio '{rpm_package}' | cpio -idm --quiet", shell=True,
                          cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    assert cpio.returncode == 0, cpio.stderr
    sitelib = next(tmp_path.glob("usr/lib/python3*/site-packages"))
    program = (tmp_path / HOOK.lstrip("/")).read_text()  # told where the package is
    assert f'sys.path.append("/{sitelib.relative_to(tmp_path)}")' in program, program
    env = dict(CLEAN_ENV, PYTHONPATH=str(sitelib))
    done = sh("/usr/bin/python3", tmp_path / "usr/sbin/qemu-ifhooks", "--version", env=env,
              cwd=tmp_path)
    assert done.stdout.strip() == f"qemu-ifhooks {__version__}"
    done = sh("/usr/bin/python3", tmp_path / HOOK.lstrip("/"), env=env, cwd=tmp_path,
              check=False)
    assert done.returncode == 64 and "usage" in done.stderr, done.stderr


# --- pip install . -------------------------------------------------------------------

def test_pip_install_into_a_fresh_venv(tmp_path):
    """A user's `pip install .`: the two programs, working, from the venv; `install`
    writes entries that start the venv's interpreter isolated on the venv's copy of the
    package, even with the .deb present, and they run."""
    if not Path("/usr/bin/python3").is_file():
        cannot_run("needs Debian's /usr/bin/python3")
    venv = tmp_path / "venv"
    done = sh("/usr/bin/python3", "-m", "venv", venv, check=False, env=dict(CLEAN_ENV))
    if done.returncode != 0:
        cannot_run(f"python3 -m venv failed (apt-get install python3-venv): {done.stderr}")
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                          str(ROOT)], cwd=tmp_path, env=dict(CLEAN_ENV),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    assert pip.returncode == 0, pip.stdout[-4000:]
    bin_dir = venv / "bin"
    done = sh(bin_dir / "qemu-ifhooks", "--version", cwd=tmp_path, env=dict(CLEAN_ENV))
    assert done.stdout.strip() == f"qemu-ifhooks {__version__}"
    done = sh(bin_dir / "qemu-ifhook", cwd=tmp_path, env=dict(CLEAN_ENV), check=False)
    assert done.returncode == 64 and done.stderr.startswith("qemu-ifhooks: "), done.stderr
    done = sh(bin_dir / "qemu-ifhooks-bridge-helper", cwd=tmp_path, env=dict(CLEAN_ENV),
              check=False)
    assert done.returncode == 64 and done.stderr.startswith("qemu-ifhooks: bridge-helper: "), \
        done.stderr
    config = tmp_path / "qemu-ifhooks.toml"
    config.write_text(SEED_CONFIG)
    config.chmod(0o644)
    entries = tmp_path / "entries"
    sh(bin_dir / "qemu-ifhooks", "--config", config, "install", "--dir", entries,
       cwd=tmp_path, env=dict(CLEAN_ENV))
    found = sh(bin_dir / "python", "-c", "import qemu_ifhooks; print(qemu_ifhooks.__file__)",
               cwd=tmp_path, env=dict(CLEAN_ENV)).stdout.strip()
    assert found.startswith(str(venv)), found
    assert_launcher(entries / "ifup-br0", str(bin_dir / "python3"),
                    str(Path(found).parent.parent))
    done = sh(entries / "ifup-br0", cwd=tmp_path, env=dict(CLEAN_ENV), check=False)
    assert done.returncode == 64, done.stderr
    assert done.stderr.startswith("qemu-ifhooks: ifup-br0: usage"), done.stderr
