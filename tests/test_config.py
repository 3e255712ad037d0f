"""Config schema and loading, data-driven in the style of tomli's tests.

tests/configs/invalid/NAME.toml starts with `# error: MESSAGE`: loading it must raise
ConfigError (status 78) whose text is exactly "PATH: MESSAGE" (a MESSAGE ending in "..."
is a prefix: parser messages of the TOML library are not ours to pin down).
tests/configs/valid/NAME.toml must load into the segments stated in VALID below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qemu_ifhooks.config import parse_config
from qemu_ifhooks.configfile import ENV_PATH, load_config
from qemu_ifhooks.configmodel import Config, Segment
from qemu_ifhooks.errors import ConfigError, ExitStatus, PermissionDenied

CONFIGS = Path(__file__).resolve().parent / "configs"
INVALID = sorted((CONFIGS / "invalid").glob("*.toml"))
VALID_FILES = sorted((CONFIGS / "valid").glob("*.toml"))


def secure(path: Path) -> str:
    """load_config refuses group/other-writable files; a checkout under umask 002 has
    them 0664."""
    os.chmod(path, 0o644)
    return str(path)


def expected_error(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8")
    prefix = "# error: "
    assert first.startswith(prefix), f"{path.name}: first line must be '{prefix}MESSAGE'"
    return first[len(prefix):]


# --- invalid ---------------------------------------------------------------------------

def test_invalid_corpus_is_there():
    assert len(INVALID) >= 40


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid(path: Path):
    expected = expected_error(path)
    name = secure(path)
    with pytest.raises(ConfigError) as raised:
        load_config(name)
    message = str(raised.value)
    if expected.endswith("..."):
        assert message.startswith(f"{name}: {expected[:-3]}"), message
    else:
        assert message == f"{name}: {expected}"
    assert raised.value.status == ExitStatus.CONFIG == 78
    assert "\n" not in message, "every failure is one line on stderr"


def test_kernel_invalid_name_rejected(tmp_path):
    """The kernel's dev_valid_name() uses its own isspace(), under which byte 0xA0 is a
    space: "brà" (b'br\\xc3\\xa0') is refused by `ip link add` with EINVAL, so the config
    must refuse it too instead of letting the hook fail at bridge creation."""
    path = tmp_path / "c.toml"
    path.write_text('[vlan.0]\nbridge = "br\u00e0"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(secure(path))
    assert str(raised.value).startswith(f"{path}: vlan.0.bridge: expected an interface name (")
    assert raised.value.status == 78


# --- valid -----------------------------------------------------------------------------

def seg(vlan, bridge, **fields) -> Segment:
    return Segment(vlan=vlan, bridge=bridge, **fields)


# file stem -> (segments in file order, [defaults] vlan)
VALID = {
    "minimal": ((Segment(0, "br0", None, None, None, (), "enforce", True, False, 0, False),),
                None),
    "design-example": ((
        seg(0, "br0", uplink="eth0"),
        seg(1, "br1", uplink="eth1", tag=101, mtu=9000, match=("web-*",)),
    ), None),
    "seed": ((seg(0, "br0", uplink="eth0"), seg(1, "br1", uplink="eth1")), None),
    "defaults-inherited": ((
        seg(2, "br2", offload_check="warn", create=False, stp=True, forward_delay=15,
            allow_addressed_uplink=True),
        seg(3, "br3", uplink="eth3", offload_check="warn", create=False, stp=True,
            forward_delay=15, allow_addressed_uplink=True),
    ), 3),
    "defaults-overridden": ((
        seg(0, "br0", offload_check="off", create=False, stp=True, forward_delay=30),
        seg(1, "br1", uplink="eth1", offload_check="enforce", create=True, stp=False,
            forward_delay=0, allow_addressed_uplink=True, mtu=1500),
    ), None),
    "match-globs": ((
        seg(10, "brweb", match=("web-*", "www?")),
        seg(2, "brdef"),
        seg(4, "brdb", match=("db[0-9]*", "web-db*")),
    ), 2),
    "shared-bridge": ((
        seg(0, "br0", uplink="eth0", mtu=9000, match=("a-*",)),
        seg(1, "br0", uplink="eth0", mtu=9000, offload_check="warn", match=("b-*",)),
        seg(2, "br2"),
    ), None),
    "limits": ((
        seg(0, "abcdefghijklmno", mtu=68, stp=True, forward_delay=2),
        seg(4094, "br\u00fc-0123456789", mtu=65535, stp=True, forward_delay=30),
        seg(7, "x", uplink="eth0", tag=1),
        seg(8, "y", uplink="eth0", tag=4094),
        seg(9, "z", uplink="eth0"),
    ), 4094),
    "bridge-named-like-vlan": ((
        seg(3, "vlan7"), seg(4, "vlan01"), seg(5, "vlan4095"), seg(6, ".br"), seg(7, "br7"),
    ), None),
    "classic": ((
        seg(0, "br0", uplink="eth0"),
        seg(1, "br101", uplink="eth0", tag=101),
        seg(2, "br102", uplink="eth0", tag=102, mtu=1500),
        seg(3, "brlong", uplink="eth0123456", tag=4094),
    ), None),
    "vlan-aware": ((
        seg(1, "br0", uplink="eth0", tag=101, bridge_vids=(100, 101, 102, 300)),
        seg(2, "br0", uplink="eth0", tag=102, match=("db-*",), bridge_vids=(100, 101, 102, 300)),
        seg(3, "br0", uplink="eth0", tag=100, trunk=(102, 101, 300),
            bridge_vids=(100, 101, 102, 300)),
        seg(4, "br200", uplink="eth0", tag=200),
        seg(5, "brlab", tag=1, bridge_vids=(1, 4094)),
        seg(6, "brlab", tag=4094, trunk=(1,), bridge_vids=(1, 4094)),
    ), None),
    "dotted-keys": ((
        seg(0, "br0", uplink="eth0", create=False),
        seg(1, "br1", create=False),
    ), None),
}


def test_every_valid_file_has_expectations():
    assert sorted(p.stem for p in VALID_FILES) == sorted(VALID)


@pytest.mark.parametrize("path", VALID_FILES, ids=[p.stem for p in VALID_FILES])
def test_valid(path: Path):
    segments, default_vlan = VALID[path.stem]
    name = secure(path)
    config = load_config(name)
    assert config == Config(name, segments, default_vlan)
    for segment in config.segments:
        assert config.segment(segment.vlan) is segment
        assert segment.key == f"vlan.{segment.vlan}"


def test_shared_bridge_helpers():
    config = load_config(secure(CONFIGS / "valid" / "shared-bridge.toml"))
    assert [s.vlan for s in config.segments_on("br0")] == [0, 1]
    assert config.segments_on("nope") == []
    assert [s.vlan for s in config.bridges()] == [0, 2]
    assert config.segment(3) is None


def test_bridge_styles():
    """Which bridge is which: the port that joins it to the network follows."""
    config = load_config(secure(CONFIGS / "valid" / "classic.toml"))
    assert [(s.classic, s.vlan_aware, s.uplink_port) for s in config.segments] == [
        (False, False, "eth0"), (True, False, "eth0.101"), (True, False, "eth0.102"),
        (True, False, "eth0123456.4094")]
    config = load_config(secure(CONFIGS / "valid" / "vlan-aware.toml"))
    assert [(s.classic, s.vlan_aware, s.uplink_port) for s in config.segments] == [
        (False, True, "eth0"), (False, True, "eth0"), (False, True, "eth0"),
        (True, False, "eth0.200"), (False, True, None), (False, True, None)]


def test_parse_config_is_pure():
    config = parse_config({"vlan": {"5": {"bridge": "br5"}}}, "mem.toml")
    assert config == Config("mem.toml", (seg(5, "br5"),), None)
    with pytest.raises(ConfigError) as raised:
        parse_config({"vlan": {"5": {"bridge": "br5", "tag": "x"}}}, "mem.toml")
    assert str(raised.value) == 'mem.toml: vlan.5.tag: expected an integer 1..4094, got "x"'


def test_segments_are_frozen():
    segment = seg(0, "br0")
    with pytest.raises(AttributeError):
        segment.bridge = "br1"  # type: ignore[misc]


# --- the file --------------------------------------------------------------------------

def write(path: Path, text: str = '[vlan.0]\nbridge = "br0"\n', mode: int = 0o644) -> str:
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_missing_file(tmp_path):
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.status == 78
    assert str(raised.value).startswith(f"{path}: not found")
    assert ENV_PATH in str(raised.value)


def test_directory(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path))
    assert raised.value.status == 78
    assert str(raised.value).startswith(f"{tmp_path}: ")


def test_character_device():
    with pytest.raises(ConfigError) as raised:
        load_config("/dev/null")
    assert raised.value.status == 78
    assert str(raised.value) == "/dev/null: not a regular file"


def test_fifo_does_not_hang(tmp_path):
    """A FIFO in place of the config must be refused, not block the hook (QEMU waits for
    the hook without a timeout)."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo, 0o644)
    code = ("import sys\nfrom qemu_ifhooks.configfile import load_config\n"
            "from qemu_ifhooks.errors import HookError\n"
            "try:\n    load_config(sys.argv[1])\nexcept HookError as e:\n"
            "    print(e); sys.exit(int(e.status))\n")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True,
                              text=True, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("load_config blocked opening a FIFO")
    assert done.returncode == 78, done.stdout + done.stderr
    assert done.stdout.strip() == f"{fifo}: not a regular file"


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646, 0o620, 0o602])
def test_writable_by_others_is_insecure(tmp_path, mode):
    path = write(tmp_path / "c.toml", mode=mode)
    with pytest.raises(PermissionDenied) as raised:
        load_config(path)
    assert raised.value.status == 77
    assert f"chmod go-w {path}" in str(raised.value)
    assert str(raised.value).startswith(f"{path}: ")


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o444, 0o640])
def test_secure_modes_load(tmp_path, mode):
    path = write(tmp_path / "c.toml", mode=mode)
    assert load_config(path).segments == (seg(0, "br0"),)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_owned_by_someone_else_is_insecure(tmp_path):
    path = write(tmp_path / "c.toml")
    os.chown(path, 65534, 65534)
    with pytest.raises(PermissionDenied) as raised:
        load_config(path)
    assert raised.value.status == 77
    assert "chown root" in str(raised.value)


def test_insecure_is_checked_before_parsing(tmp_path):
    """An insecure file is refused as such, whatever it contains."""
    path = write(tmp_path / "c.toml", "this is not toml", mode=0o666)
    with pytest.raises(PermissionDenied):
        load_config(path)


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_directory_others_can_write_to_is_insecure(tmp_path, mode):
    """Whoever can write to the directory can replace a root-owned 0644 config."""
    directory = tmp_path / "etc"
    directory.mkdir()
    path = write(directory / "c.toml")
    os.chmod(directory, mode)
    with pytest.raises(PermissionDenied) as raised:
        load_config(path)
    assert str(raised.value) == (f"{path}: insecure: its directory {directory} is writable by group "
                                 f"or others (mode {mode:04o}); keep the config where only root can write")
    os.chmod(directory, 0o755)
    assert load_config(path).segments == (seg(0, "br0"),)


def test_a_sticky_directory_of_roots_is_fine(tmp_path):
    directory = tmp_path / "tmp"
    directory.mkdir()
    path = write(directory / "c.toml")
    os.chmod(directory, 0o1777)
    if os.geteuid() == 0:
        assert load_config(path).segments == (seg(0, "br0"),)
        os.chown(directory, 65534, 65534)  # sticky, but its owner could replace the file
    with pytest.raises(PermissionDenied, match=r"insecure: its directory .* is owned by uid"):
        load_config(path)


def test_a_config_larger_than_the_limit_is_refused_unparsed(tmp_path):
    from qemu_ifhooks.configfile import MAX_CONFIG_BYTES

    path = write(tmp_path / "big.toml", '[vlan.0]\nbridge = "br0"\n' + "# padding\n" * (MAX_CONFIG_BYTES // 10))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == (f"{path}: larger than 256 KiB; a config this large is not one "
                                 f"qemu-ifhooks wrote or expects")


def test_echoed_values_and_keys_are_cut(tmp_path):
    path = write(tmp_path / "value.toml", f'[vlan.0]\nbridge = "{"x" * 3000}"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).endswith(' got "' + "x" * 56 + "...")  # 60 characters of the value
    assert len(str(raised.value)) < len(path) + 250, str(raised.value)
    path = write(tmp_path / "key.toml", f'[vlan.0]\nbridge = "br0"\n{"k" * 3000} = 1\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == f"{path}: vlan.0.{'k' * 110}...: unknown key"


def test_env_override(tmp_path, monkeypatch):
    path = write(tmp_path / "env.toml", '[vlan.9]\nbridge = "br9"\n')
    monkeypatch.setenv(ENV_PATH, path)
    config = load_config()
    assert config.path == path
    assert config.segments == (seg(9, "br9"),)


def test_env_override_missing_names_the_env_path(tmp_path, monkeypatch):
    path = str(tmp_path / "absent.toml")
    monkeypatch.setenv(ENV_PATH, path)
    with pytest.raises(ConfigError) as raised:
        load_config()
    assert str(raised.value).startswith(f"{path}: ")
    assert raised.value.status == 78


def test_explicit_path_beats_env(tmp_path, monkeypatch):
    env = write(tmp_path / "env.toml", '[vlan.9]\nbridge = "br9"\n')
    explicit = write(tmp_path / "explicit.toml", '[vlan.1]\nbridge = "br1"\n')
    monkeypatch.setenv(ENV_PATH, env)
    config = load_config(explicit)
    assert config.path == explicit
    assert config.segments == (seg(1, "br1"),)


def test_default_path_without_env(monkeypatch):
    from qemu_ifhooks.configfile import DEFAULT_PATH, config_path

    monkeypatch.delenv(ENV_PATH, raising=False)
    assert config_path() == DEFAULT_PATH == "/etc/qemu-ifhooks/qemu-ifhooks.toml"
    monkeypatch.setenv(ENV_PATH, "/x.toml")
    assert config_path() == "/x.toml"
    assert config_path("/y.toml") == "/y.toml"


def test_readme_config_examples_are_valid():
    import re
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"^```toml\n(.*?)^```$", readme, re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 3
    for block in blocks:
        assert parse_config(tomllib.loads(block), "README.md").segments


def test_shipped_example_config_is_valid(tmp_path):
    """etc/qemu-ifhooks.toml is what packages install as the conffile."""
    example = tmp_path / "qemu-ifhooks.toml"
    example.write_bytes((Path(__file__).resolve().parent.parent / "etc" /
                         "qemu-ifhooks.toml").read_bytes())
    config = load_config(secure(example))
    assert [(s.vlan, s.bridge, s.uplink) for s in config.segments] == [
        (0, "br0", "eth0"), (1, "br1", "eth1")]
    # Its commented-out keys and tables are examples: with all of them in, still valid.
    import re

    text = example.read_text()
    example.write_text(re.sub(r"^# (?=\[vlan\.\d+\]|\[port\.|\[evpn\]|\w+ = )", "", text,
                              flags=re.MULTILINE))
    config = load_config(secure(example))
    assert [(s.vlan, s.bridge, s.uplink_port, s.vlan_aware) for s in config.segments] == [
        (0, "br0", "eth0", False), (1, "br1", "eth1.101", False),
        (101, "br101", "eth0.101", False), (102, "br102", "eth0.102", False),
        (201, "brvlan", "eth2", True), (202, "brvlan", "eth2", True),
        (200, "brvlan", "eth2", True), (2, "br2", "eth3", False),
        (7, "br7", None, False), (8, "br8", None, False)]
    guarded = config.segment(2)
    assert (guarded.port_security, guarded.isolated, guarded.guest_rx_mbit, guarded.guest_tx_mbit) == \
        ("ip", True, 100, 100)
    (port,) = config.ports
    assert (port.pattern, port.mac, port.ipv4) == ("web1-*", bytes.fromhex("525400123456"),
                                                  ((bytes([192, 0, 2, 10]), 32),))
    assert [s.vxlan.mode for s in config.segments[-2:]] == ["static", "evpn"]
    assert config.evpn.asn == 65000


def test_allow_users_and_groups_are_per_segment_and_default_to_nobody():
    config = parse_config({"vlan": {
        "0": {"bridge": "br0", "allow_users": ["alice", "ci-runner.1", "svc$"],
              "allow_groups": ["kvm"]},
        "1": {"bridge": "br1"}}})
    assert config.segment(0).allow_users == ("alice", "ci-runner.1", "svc$")
    assert config.segment(0).allow_groups == ("kvm",)
    assert config.segment(1).allow_users == () and config.segment(1).allow_groups == ()
