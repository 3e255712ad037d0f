"""The executables' usage errors, as a user (or QEMU) sees them: exit status from the
table and exactly one line on stderr, never a traceback. Nothing here reaches the
kernel: every case fails (or succeeds) before a netlink socket is opened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
_VENV_BIN = ROOT / ".venv" / "bin"
BIN = _VENV_BIN if (_VENV_BIN / "qemu-ifhooks").exists() else Path(sys.executable).parent
CLI = BIN / "qemu-ifhooks"
HOOK = BIN / "qemu-ifhook"

VALID = '[vlan.0]\nbridge = "br0"\nuplink = "eth0"\n\n[vlan.1]\nbridge = "br1"\n'


def env_with(config: Optional[Path], **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QEMU_IFHOOKS_")}
    if config is not None:
        env["QEMU_IFHOOKS_CONFIG"] = str(config)
    env.update(extra)
    return env


def run(argv, config: Optional[Path] = None, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          env=env_with(config, **extra), cwd="/", timeout=60)


def assert_one_line(done: subprocess.CompletedProcess, status: int, *fragments: str) -> str:
    assert done.returncode == status, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("qemu-ifhooks:"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def valid_config(tmp_path) -> Path:
    path = tmp_path / "qemu-ifhooks.toml"
    path.write_text(VALID)
    path.chmod(0o644)
    return path


@pytest.fixture
def malformed_config(tmp_path) -> Path:
    path = tmp_path / "malformed.toml"
    path.write_text('[vlan.0]\nbridge "br0"\n')
    path.chmod(0o644)
    return path


# --- qemu-ifhooks ------------------------------------------------------------------------

def test_version():
    from qemu_ifhooks import __version__

    done = run([CLI, "--version"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"qemu-ifhooks {__version__}"
    assert done.stderr == ""


def test_help():
    done = run([CLI, "--help"])
    assert done.returncode == 0
    for command in ("hook", "up", "down", "install", "uninstall"):
        assert command in done.stdout


@pytest.mark.parametrize("argv", [
    [],
    ["frobnicate"],
    ["hook", "ifup", "tap0"],                             # neither --vlan nor --bridge
    ["hook", "ifup"],
    ["hook", "ifup", "--vlan", "1", "--bridge", "br0", "tap0"],
    ["hook", "ifup", "--vlan", "4095", "tap0"],
    ["hook", "ifup", "--vlan", "x", "tap0"],
    ["hook", "ifsideways", "--vlan", "1", "tap0"],
    ["up", "5000"],
    ["up", "-1"],
    ["down", "4095"],
    ["install", "--bogus"],
    ["--no-such-option"],
], ids=lambda argv: " ".join(argv) or "no-subcommand")
def test_usage_errors(argv, valid_config):
    assert_one_line(run([CLI, *argv], valid_config), 64)


def test_up_5000_names_the_range():
    assert_one_line(run([CLI, "up", "5000"]), 64, "5000", "0..4094")


@pytest.mark.parametrize("where", ["env", "option-before", "option-after"])
def test_install_malformed_config(tmp_path, malformed_config, where):
    target = tmp_path / "hooks"
    if where == "env":
        done = run([CLI, "install", "--dir", target], malformed_config)
    elif where == "option-before":
        done = run([CLI, "--config", malformed_config, "install", "--dir", target])
    else:
        done = run([CLI, "install", "--dir", target, "--config", malformed_config])
    assert_one_line(done, 78, str(malformed_config), "invalid TOML")
    assert not target.exists()


def test_install_missing_config(tmp_path):
    missing = tmp_path / "absent.toml"
    assert_one_line(run([CLI, "install", "--dir", tmp_path / "hooks"], missing), 78,
                    str(missing))
    assert not (tmp_path / "hooks").exists()


def test_install_insecure_config(tmp_path, valid_config):
    valid_config.chmod(0o666)
    assert_one_line(run([CLI, "install", "--dir", tmp_path / "hooks"], valid_config), 77,
                    "chmod go-w")


def test_install_invalid_config_with_newline_is_one_line(tmp_path):
    """A value with a newline must not split the error over two lines: QEMU shows the
    user one line."""
    path = tmp_path / "c.toml"
    path.write_text('[vlan.0]\nbridge = "br\\n0"\n')
    path.chmod(0o644)
    assert_one_line(run([CLI, "install", "--dir", tmp_path / "hooks"], path), 78,
                    "vlan.0.bridge")


def test_install_and_uninstall(tmp_path, valid_config):
    hooks = tmp_path / "hooks"
    done = run([CLI, "install", "--dir", hooks], valid_config)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in hooks.iterdir())
    assert names == ["ifdown-br0", "ifdown-br1", "ifup-br0", "ifup-br1"]
    assert all((hooks / n).read_text().startswith(f"#!{sys.executable} -IS\n") for n in names)
    assert done.stdout.splitlines() == [f"installed {hooks / n}" for n in
                                        ("ifup-br0", "ifdown-br0", "ifup-br1", "ifdown-br1")]
    done = run([CLI, "uninstall", "--dir", hooks], valid_config)
    assert done.returncode == 0, done.stderr
    assert list(hooks.iterdir()) == []


def test_install_foreign_file(tmp_path, valid_config):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "ifup-br0").write_text("mine\n")
    assert_one_line(run([CLI, "install", "--dir", hooks], valid_config), 64, "--force")
    assert sorted(p.name for p in hooks.iterdir()) == ["ifup-br0"]


# --- qemu-ifhook (as QEMU runs it) ----------------------------------------------------------

def entry(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.symlink_to(HOOK)
    return path


@pytest.mark.parametrize("args", [[], ["tap0", "extra"]], ids=["no-args", "two-args"])
def test_hook_wrong_argument_count(tmp_path, valid_config, args):
    hook = entry(tmp_path, "ifup-br0")
    line = assert_one_line(run([hook, *args], valid_config), 64)
    assert "usage: ifup-br0 TAP" in line
    assert line.startswith("qemu-ifhooks: ifup-br0: ")


@pytest.mark.parametrize("tap", ["bad/name", "bad:name", "bad name", "", ".",
                                 "0123456789abcdef"])
def test_hook_invalid_tap_name(tmp_path, valid_config, tap):
    hook = entry(tmp_path, "ifup-br0")
    assert_one_line(run([hook, tap], valid_config), 64, "invalid interface name")


def test_hook_invalid_tap_name_with_newline_is_one_line(tmp_path, valid_config):
    hook = entry(tmp_path, "ifdown-br0")
    assert_one_line(run([hook, "bad\nname"], valid_config), 64, "invalid interface name")


@pytest.mark.parametrize("name", ["ifup-br9", "ifdown-vlan9", "qemu-ifup", "qemu-ifhook"])
def test_hook_name_maps_to_no_segment(tmp_path, valid_config, name):
    hook = entry(tmp_path, name)
    assert_one_line(run([hook, "tap0"], valid_config), 64, f"qemu-ifhooks: {name}: ")


def test_hook_missing_config(tmp_path):
    hook = entry(tmp_path, "ifup-br0")
    missing = tmp_path / "absent.toml"
    assert_one_line(run([hook, "tap0"], missing), 78, str(missing))


def test_hook_malformed_config(tmp_path, malformed_config):
    hook = entry(tmp_path, "ifdown-br0")
    assert_one_line(run([hook, "tap0"], malformed_config), 78, "invalid TOML")


def test_hook_insecure_config(tmp_path, valid_config):
    valid_config.chmod(0o646)
    hook = entry(tmp_path, "ifup-br0")
    assert_one_line(run([hook, "tap0"], valid_config), 77, "chmod go-w")


def test_explicit_hook_subcommand_invalid_tap(valid_config):
    assert_one_line(run([CLI, "hook", "ifup", "--vlan", "0", "bad/name"], valid_config), 64,
                    "invalid interface name")


def test_explicit_hook_subcommand_unknown_bridge(valid_config):
    assert_one_line(run([CLI, "hook", "ifdown", "--bridge", "br9", "tap0"], valid_config),
                    64, "br9")
