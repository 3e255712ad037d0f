"""`qemu-ifhooks install` / `uninstall`: hook entries as symlinks to the hook program."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qemu_ifhooks.config import load_config
from qemu_ifhooks.errors import UsageError
from qemu_ifhooks.install import PROGRAM, entry_names, install, is_ours, uninstall

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
def program(tmp_path, monkeypatch) -> Path:
    """A stand-in for the hook program, found through QEMU_IFHOOKS_HOOK."""
    path = tmp_path / "bin" / PROGRAM
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    monkeypatch.setenv("QEMU_IFHOOKS_HOOK", str(path))
    return path


def config(tmp_path: Path, text: str):
    path = tmp_path / "qemu-ifhooks.toml"
    path.write_text(text)
    path.chmod(0o644)
    return load_config(str(path))


def listing(directory: Path) -> dict:
    """name -> symlink target, or the file's text for anything that is not a symlink."""
    out = {}
    for entry in sorted(directory.iterdir()):
        out[entry.name] = os.readlink(entry) if entry.is_symlink() else entry.read_text()
    return out


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


def test_install_unique_bridges(tmp_path, program):
    hooks = tmp_path / "hooks"
    paths = install(config(tmp_path, SEED), str(hooks), force=False)
    assert paths == [str(hooks / n) for n in ("ifup-br0", "ifdown-br0", "ifup-br1", "ifdown-br1")]
    assert listing(hooks) == {name: str(program) for name in
                              ("ifdown-br0", "ifdown-br1", "ifup-br0", "ifup-br1")}
    for path in paths:
        assert os.path.islink(path) and is_ours(path)
        assert os.access(path, os.X_OK)


def test_install_mixed(tmp_path, program):
    hooks = tmp_path / "hooks"
    install(config(tmp_path, MIXED), str(hooks), force=False)
    assert sorted(listing(hooks)) == sorted(
        f"{action}-{rest}" for action in ("ifup", "ifdown")
        for rest in ("br0", "vlan1", "vlan2", "vlan3", "br7", "vlan4", "vlan01"))
    assert set(listing(hooks).values()) == {str(program)}


def test_install_creates_the_directory(tmp_path, program):
    hooks = tmp_path / "a" / "b"
    install(config(tmp_path, SEED), str(hooks), force=False)
    assert (hooks / "ifup-br0").is_symlink()


def test_reinstall_is_idempotent(tmp_path, program):
    hooks = tmp_path / "hooks"
    cfg = config(tmp_path, MIXED)
    first = install(cfg, str(hooks), force=False)
    before = listing(hooks)
    assert install(cfg, str(hooks), force=False) == first
    assert listing(hooks) == before
    assert not any(name.endswith(".qemu-ifhooks-new") for name in before)


def test_reinstall_with_hook_program_of_another_name(tmp_path, monkeypatch):
    """QEMU_IFHOOKS_HOOK may name the program anything; what install wrote, a second
    install must recognise as its own (and uninstall must remove)."""
    other = tmp_path / "bin" / "qemu-ifhook-dev"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    monkeypatch.setenv("QEMU_IFHOOKS_HOOK", str(other))
    hooks = tmp_path / "hooks"
    cfg = config(tmp_path, SEED)
    install(cfg, str(hooks), force=False)
    install(cfg, str(hooks), force=False)
    entries = sorted(str(hooks / n) for n in listing(hooks))
    assert len(entries) == 4
    assert sorted(uninstall(str(hooks))) == entries
    assert not listing(hooks)


def test_foreign_file_refused(tmp_path, program):
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


def test_foreign_symlink_refused(tmp_path, program):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "ifup-br0").symlink_to("/etc/qemu-ifup")
    with pytest.raises(UsageError):
        install(config(tmp_path, SEED), str(hooks), force=False)
    assert listing(hooks) == {"ifup-br0": "/etc/qemu-ifup"}


def test_foreign_file_replaced_with_force(tmp_path, program):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "ifdown-br1").write_text("#!/bin/sh\n")
    (hooks / "README").write_text("unrelated\n")
    install(config(tmp_path, SEED), str(hooks), force=True)
    entries = listing(hooks)
    assert entries.pop("README") == "unrelated\n"
    assert entries == {name: str(program) for name in
                       ("ifdown-br0", "ifdown-br1", "ifup-br0", "ifup-br1")}


def test_uninstall_removes_only_ours(tmp_path, program):
    hooks = tmp_path / "hooks"
    installed = install(config(tmp_path, SEED), str(hooks), force=False)
    (hooks / "ifup-foreign").write_text("#!/bin/sh\n")          # a foreign regular file
    (hooks / "ifdown-other").symlink_to("/etc/qemu-ifdown")      # a foreign symlink
    (hooks / "qemu-ifhooks.toml").write_text("")                 # not a hook entry
    removed = uninstall(str(hooks))
    assert sorted(removed) == sorted(installed)
    assert listing(hooks) == {"ifup-foreign": "#!/bin/sh\n",
                              "ifdown-other": "/etc/qemu-ifdown",
                              "qemu-ifhooks.toml": ""}
    assert uninstall(str(hooks)) == []


def test_uninstall_missing_directory(tmp_path):
    assert uninstall(str(tmp_path / "absent")) == []
