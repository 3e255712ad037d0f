"""`qemu-ifhooks install` / `uninstall`: hook entries, each a generated launcher that
starts this installation's hook program isolated from QEMU's environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qemu_ifhooks.configfile import load_config
from qemu_ifhooks.errors import UnavailableError, UsageError
from qemu_ifhooks.install import (PROGRAM, entry_names, install, is_ours, launcher,
                                  launcher_config, read_launcher, this_installation,
                                  uninstall)

SEED = '[vlan.0]\nbridge = "br0"\nuplink = "eth0"\n\n[vlan.1]\nbridge = "br1"\nuplink = "eth1"\n'

MIXED = """\
[vlan.0]
bridge = "br0"

[vlan.1]
bridge = "shared"

[vlan.2]
bridge = "shared"

[vlan.3]
bridge = "vlan7"

[vlan.7]
bridge = "br7"

[vlan.4]
bridge = "vlan9"

[vlan.5]
bridge = "vlan01"
"""


@pytest.fixture
def legacy_program(tmp_path) -> Path:
    """The hook program entries of earlier versions were symlinks to."""
    path = tmp_path / "bin" / PROGRAM
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def config(tmp_path: Path, text: str):
    path = tmp_path / "qemu-ifhooks.toml"
    path.write_text(text)
    path.chmod(0o644)
    return load_config(str(path))


def listing(directory: Path) -> dict:
    """name -> symlink target, "launcher" for an entry install wrote, or the file's text."""
    out = {}
    for entry in sorted(directory.iterdir()):
        if entry.is_symlink():
            out[entry.name] = os.readlink(entry)
        else:
            text = entry.read_text()
            out[entry.name] = "launcher" if is_launcher(text) else text
    return out


LIBDIR = str(Path(__file__).resolve().parent.parent)  # this checkout, installed editable


def is_launcher(text: str, interpreter: str = sys.executable) -> bool:
    """Starts `interpreter` isolated and runs the hook from this checkout."""
    return (text.startswith(f"#!{interpreter} -IS\n")
            and f"\nsys.path.append({LIBDIR!r})\n" in text
            and "\nfrom qemu_ifhooks.hookcode import main" in text)


def test_entry_names_seed(tmp_path):
    assert entry_names(config(tmp_path, SEED)) == [("ifup-br0", "ifdown-br0"),
                                                    ("ifup-br1", "ifdown-br1")]


def test_entry_names_mixed(tmp_path):
    assert entry_names(config(tmp_path, MIXED)) == [
        ("ifup-br0", "ifdown-br0"),      # unique bridge
        ("ifup-vlan1", "ifdown-vlan1"),  # shared bridge
        ("ifup-vlan2", "ifdown-vlan2"),
        ("ifup-vlan3", "ifdown-vlan3"),  # bridge "vlan7": ifup-vlan7 means vlan.7
        ("ifup-br7", "ifdown-br7"),
        ("ifup-vlan4", "ifdown-vlan4"),  # bridge "vlan9": ifup-vlan9 means (missing) vlan.9
        ("ifup-vlan01", "ifdown-vlan01"),  # "vlan01" is no VLAN number: a bridge name
    ]


def test_install_unique_bridges(tmp_path):
    hooks = tmp_path / "hooks"
    paths = install(config(tmp_path, SEED), str(hooks), force=False)
    assert paths == [str(hooks / n) for n in ("ifup-br0", "ifdown-br0", "ifup-br1", "ifdown-br1")]
    assert listing(hooks) == {name: "launcher" for name in
                              ("ifdown-br0", "ifdown-br1", "ifup-br0", "ifup-br1")}
    for path in paths:
        assert os.stat(path).st_mode & 0o7777 == 0o755
        assert is_ours(path)
        assert read_launcher(path) == (sys.executable, LIBDIR) == this_installation()


def test_install_mixed(tmp_path):
    hooks = tmp_path / "hooks"
    install(config(tmp_path, MIXED), str(hooks), force=False)
    assert sorted(listing(hooks)) == sorted(
        f"{action}-{rest}" for action in ("ifup", "ifdown")
        for rest in ("br0", "vlan1", "vlan2", "vlan3", "br7", "vlan4", "vlan01"))
    assert set(listing(hooks).values()) == {"launcher"}


def test_install_creates_the_directory(tmp_path):
    hooks = tmp_path / "a" / "b"
    install(config(tmp_path, SEED), str(hooks), force=False)
    assert listing(hooks)["ifup-br0"] == "launcher"


def test_reinstall_is_idempotent(tmp_path):
    hooks = tmp_path / "hooks"
    cfg = config(tmp_path, MIXED)
    first = install(cfg, str(hooks), force=False)
    before = listing(hooks)
    assert install(cfg, str(hooks), force=False) == first
    assert listing(hooks) == before
    assert not any(name.endswith(".qemu-ifhooks-new") for name in before)


def test_entries_of_earlier_versions_are_replaced_and_removed(tmp_path, legacy_program):
    """Earlier versions wrote symlinks to the hook program: still ours, so install
    replaces them without --force and uninstall removes them."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "ifup-br0").symlink_to(legacy_program)
    (hooks / "ifdown-br9").symlink_to(legacy_program)  # a segment since removed
    install(config(tmp_path, SEED), str(hooks), force=False)
    assert listing(hooks) == {"ifdown-br0": "launcher", "ifdown-br1": "launcher",
                              "ifdown-br9": str(legacy_program), "ifup-br0": "launcher",
                              "ifup-br1": "launcher"}
    assert len(uninstall(str(hooks))) == 5
    assert not listing(hooks)


def test_interpreter_a_hash_bang_line_cannot_hold(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/opt/my python/bin/python3")
    hooks = tmp_path / "hooks"
    with pytest.raises(UnavailableError) as raised:
        install(config(tmp_path, SEED), str(hooks), force=False)
    assert raised.value.status == 69 and "/opt/my python/bin/python3" in str(raised.value)
    assert not hooks.exists()


def test_foreign_file_refused(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "ifdown-br1").write_text("#!/bin/sh\n# the admin's own script\n")
    before = listing(hooks)
    with pytest.raises(UsageError) as raised:
        install(config(tmp_path, SEED), str(hooks), force=False)
    assert raised.value.status == 64
    assert str(hooks / "ifdown-br1") in str(raised.value)
    assert "--force" in str(raised.value)
    assert listing(hooks) == before  # nothing written, not even the other entries


def test_foreign_symlink_refused(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "ifup-br0").symlink_to("/etc/qemu-ifup")
    with pytest.raises(UsageError):
        install(config(tmp_path, SEED), str(hooks), force=False)
    assert listing(hooks) == {"ifup-br0": "/etc/qemu-ifup"}


def test_foreign_file_replaced_with_force(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "ifdown-br1").write_text("#!/bin/sh\n")
    (hooks / "README").write_text("unrelated\n")
    install(config(tmp_path, SEED), str(hooks), force=True)
    entries = listing(hooks)
    assert entries.pop("README") == "unrelated\n"
    assert entries == {name: "launcher" for name in
                       ("ifdown-br0", "ifdown-br1", "ifup-br0", "ifup-br1")}


def test_uninstall_removes_only_ours(tmp_path):
    hooks = tmp_path / "hooks"
    installed = install(config(tmp_path, SEED), str(hooks), force=False)
    (hooks / "ifup-foreign").write_text("#!/bin/sh\n")          # a foreign regular file
    edited = (hooks / "ifup-br0").read_text().replace(" -IS", "")  # not as install wrote it
    (hooks / "ifup-edited").write_text(edited)
    (hooks / "ifdown-other").symlink_to("/etc/qemu-ifdown")      # a foreign symlink
    (hooks / "qemu-ifhooks.toml").write_text("")                 # not a hook entry
    removed = uninstall(str(hooks))
    assert sorted(removed) == sorted(installed)
    assert listing(hooks) == {"ifup-foreign": "#!/bin/sh\n",
                              "ifup-edited": edited,
                              "ifdown-other": "/etc/qemu-ifdown",
                              "qemu-ifhooks.toml": ""}
    assert uninstall(str(hooks)) == []


def test_uninstall_missing_directory(tmp_path):
    assert uninstall(str(tmp_path / "absent")) == []


def test_entry_runs_isolated_from_qemus_environment(tmp_path, monkeypatch):
    """QEMU runs the hooks as root in its own environment: an entry runs no
    sitecustomize.py found through PYTHONPATH and no .pth file of its interpreter's
    site-packages (pip's console scripts run both)."""
    venv = tmp_path / "venv"
    made = subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    ran = tmp_path / "ran"
    ran.mkdir()
    site_packages = next(venv.glob("lib/python3*/site-packages"))
    (site_packages / "probe.pth").write_text(f"import os; open({str(ran / 'pth')!r}, 'w')\n")
    outside = tmp_path / "pythonpath"
    outside.mkdir()
    (outside / "sitecustomize.py").write_text(f"open({str(ran / 'sitecustomize')!r}, 'w')\n")
    env = dict(os.environ, PYTHONPATH=str(outside))
    # Control: the interpreter started as a console script starts it runs both.
    subprocess.run([str(python), "-c", "pass"], env=env, check=True)
    assert sorted(os.listdir(ran)) == ["pth", "sitecustomize"]
    for done in ran.iterdir():
        done.unlink()

    monkeypatch.setattr(sys, "executable", str(python))  # install for that interpreter
    hooks = tmp_path / "hooks"
    install(config(tmp_path, SEED), str(hooks), force=False)
    assert is_launcher((hooks / "ifup-br0").read_text(), str(python))
    done = subprocess.run([str(hooks / "ifup-br0")], env=env, capture_output=True, text=True)
    assert done.returncode == 64, done.stderr
    assert done.stderr.startswith("qemu-ifhooks: ifup-br0: usage: ifup-br0 TAP"), done.stderr
    assert os.listdir(ran) == []


def test_purge_knows_the_marker():
    """The .deb's postrm recognises the entries by install's marker line."""
    from qemu_ifhooks.install import MARKER

    postrm = Path(LIBDIR, "packaging", "debian", "postrm").read_text()
    assert f'MARKER="{MARKER}"' in postrm


LIBVIRT_ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/",
               "USER": "root", "LOGNAME": "root"}  # all that libvirtd leaves a script


def test_entries_carry_the_config_they_were_installed_with(tmp_path, monkeypatch):
    """install --config: the entry reads that file whatever its caller's environment
    says (libvirtd clears QEMU_IFHOOKS_CONFIG), as an absolute path."""
    made = config(tmp_path, SEED)
    monkeypatch.chdir(tmp_path)
    hooks = tmp_path / "hooks"
    install(made, str(hooks), force=False, config_file="qemu-ifhooks.toml")
    entry = hooks / "ifup-br0"
    assert is_launcher(entry.read_text())
    assert launcher_config(str(entry)) == str(tmp_path / "qemu-ifhooks.toml")
    (tmp_path / "qemu-ifhooks.toml").unlink()  # the entry must name it, not find it
    elsewhere = tmp_path / "other.toml"
    elsewhere.write_text(SEED)
    for env in (LIBVIRT_ENV, {**LIBVIRT_ENV, "QEMU_IFHOOKS_CONFIG": str(elsewhere)}):
        done = subprocess.run([str(entry), "tap0"], env=env, cwd="/", capture_output=True,
                              text=True)
        assert done.returncode == 78, done.stderr
        assert done.stderr == (f"qemu-ifhooks: ifup-br0: tap0: {tmp_path}/qemu-ifhooks.toml: "
                               f"not found; write one (see qemu-ifhooks.toml(5)) or point "
                               f"QEMU_IFHOOKS_CONFIG at it\n")


def test_entries_without_a_config_follow_the_environment(tmp_path):
    install(config(tmp_path, SEED), str(tmp_path / "hooks"), force=False)
    entry = tmp_path / "hooks" / "ifdown-br1"
    assert launcher_config(str(entry)) is None
    missing = tmp_path / "missing.toml"
    done = subprocess.run([str(entry), "tap0"], capture_output=True, text=True,
                          env={**LIBVIRT_ENV, "QEMU_IFHOOKS_CONFIG": str(missing)})
    assert done.returncode == 78 and f"{missing}: not found" in done.stderr, done.stderr


def test_install_cli_bakes_the_config_it_read(tmp_path):
    """--config or $QEMU_IFHOOKS_CONFIG: the entries keep reading that file."""
    config(tmp_path, SEED)
    path = str(tmp_path / "qemu-ifhooks.toml")
    cli = Path(sys.executable).parent / "qemu-ifhooks"
    for n, (args, env) in enumerate(((["--config", path], {}),
                                     ([], {"QEMU_IFHOOKS_CONFIG": path}))):
        hooks = tmp_path / f"hooks{n}"
        done = subprocess.run([str(cli), "install", "--dir", str(hooks), *args],
                              env={**os.environ, **env}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert {launcher_config(str(p)) for p in hooks.iterdir()} == {path}


def test_a_config_path_that_is_not_utf8_survives(tmp_path):
    odd = os.fsdecode(b"/etc/qemu-ifhooks/\xffweird'.toml")
    text = launcher(sys.executable, LIBDIR, odd)
    text.encode("ascii")  # written as plain text
    entry = tmp_path / "ifup-br0"
    entry.write_text(text)
    assert launcher_config(str(entry)) == odd
