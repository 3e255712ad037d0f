"""The cache of the validated config (qemu_ifhooks/configcache.py): used when the file
and the code that validates it are unchanged, never when either changed, ignored when
it cannot be trusted.

Files younger than RACY_SECONDS are never cached, so the tests that need a cache wait
that long once (`aged`): a file's ctime cannot be set back.
"""

from __future__ import annotations

import marshal
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from qemu_ifhooks import config as config_module
from qemu_ifhooks import configcache
from qemu_ifhooks.config import parse_config
from qemu_ifhooks.configfile import load_config, read_config

BR0 = '[vlan.0]\nbridge = "br0"\n'
BR9 = '[vlan.0]\nbridge = "br9"\n'  # the same size: only the timestamps tell them apart


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "run"
    monkeypatch.setattr(configcache, "RUN_DIR", str(directory))
    return directory


def write(path: Path, text: str) -> str:
    path.write_text(text)
    os.chmod(path, 0o644)
    return str(path)


def aged(path: Path, text: str) -> str:
    name = write(path, text)
    time.sleep(configcache.RACY_SECONDS + 0.1)
    return name


def bridge_of(name: str) -> str:
    return load_config(name).segments[0].bridge


def test_a_fresh_file_is_not_cached(tmp_path, run_dir):
    name = write(tmp_path / "c.toml", BR0)
    assert bridge_of(name) == "br0"
    assert not Path(configcache.cache_path(name)).exists()


def test_an_unchanged_file_is_read_from_the_cache(tmp_path, run_dir, monkeypatch):
    name = aged(tmp_path / "c.toml", BR0)
    assert bridge_of(name) == "br0"
    cache = Path(configcache.cache_path(name))
    assert cache.parent == run_dir and cache.exists()
    assert os.stat(cache).st_mode & 0o777 == 0o644
    assert not list(run_dir.glob("*.cache.*")), "no temporary file left"
    with monkeypatch.context() as patch:
        patch.setattr(config_module, "parse_toml", lambda path, data: pytest.fail("parsed"))
        assert bridge_of(name) == "br0"


@pytest.mark.parametrize("change", ["rewrite", "replace", "chmod", "touch back"])
def test_any_change_to_the_file_misses(tmp_path, run_dir, change):
    path = tmp_path / "c.toml"
    name = aged(path, BR0)
    before = os.stat(path)
    assert bridge_of(name) == "br0"  # cached now
    if change == "rewrite":  # in place, same size, straight after the cache was made
        with open(path, "r+") as f:
            f.write(BR9)
    elif change == "replace":  # an editor's save: a new inode
        write(tmp_path / "new.toml", BR9)
        os.replace(tmp_path / "new.toml", path)
    elif change == "chmod":  # content unchanged, but the file's state is not
        os.chmod(path, 0o600)
    else:  # `cp -p`/rsync -t restore the old mtime after writing: ctime still moves
        with open(path, "r+") as f:
            f.write(BR9)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert bridge_of(name) == ("br0" if change == "chmod" else "br9")
    if change == "chmod":
        assert configcache.load(name, os.stat(path)) is None


def test_a_damaged_cache_is_a_miss_and_is_rewritten(tmp_path, run_dir):
    name = aged(tmp_path / "c.toml", BR0)
    run_dir.mkdir()
    cache = Path(configcache.cache_path(name))
    cache.write_bytes(b"\xfa not marshal data")
    os.chmod(cache, 0o644)
    assert bridge_of(name) == "br0"
    key, plain = marshal.loads(cache.read_bytes())
    assert key == configcache.cache_key(name, os.stat(name))
    assert configcache.decode(plain) == parse_config({"vlan": {"0": {"bridge": "br0"}}}, name)


def forged(name: str, key_for: str, bridge: str) -> bytes:
    """A cache of a valid Config whose segment 0 uses `bridge`, keyed for `key_for`."""
    config = parse_config({"vlan": {"0": {"bridge": bridge}}}, name)
    return marshal.dumps((configcache.cache_key(key_for, os.stat(key_for)),
                          configcache.encode(config)))


@pytest.mark.parametrize("mode", [0o666, 0o620])
def test_a_cache_others_could_write_is_ignored(tmp_path, run_dir, mode):
    name = aged(tmp_path / "c.toml", BR0)
    assert bridge_of(name) == "br0"
    cache = Path(configcache.cache_path(name))
    cache.write_bytes(forged(name, name, "evil0"))
    os.chmod(cache, 0o644)
    assert configcache.load(name, os.stat(name)).segments[0].bridge == "evil0"  # control
    os.chmod(cache, mode)
    assert configcache.load(name, os.stat(name)) is None
    assert bridge_of(name) == "br0"


def test_a_cache_made_for_another_path_is_ignored(tmp_path, run_dir):
    """Cache files are named by a checksum of the path: the key still names it."""
    name = aged(tmp_path / "c.toml", BR0)
    other = write(tmp_path / "other.toml", BR9)
    run_dir.mkdir()
    Path(configcache.cache_path(other)).write_bytes(forged(name, name, "br0"))
    os.chmod(configcache.cache_path(other), 0o644)
    assert configcache.load(other, os.stat(other)) is None
    assert bridge_of(other) == "br9"


def test_a_cache_made_by_other_validation_code_is_a_miss(tmp_path, run_dir, monkeypatch):
    """An upgrade (or an edit) of any module that validates the config makes the
    cached Config a miss: the new code decides again."""
    code = tmp_path / "code"
    code.mkdir()
    for module in configcache.VALIDATED_BY:
        shutil.copy2(ROOT / "qemu_ifhooks" / f"{module}.py", code)
    monkeypatch.setattr(configcache, "DIRECTORY", str(code))
    name = aged(tmp_path / "c.toml", BR0)
    assert bridge_of(name) == "br0"
    assert configcache.load(name, os.stat(name)) is not None
    for module in configcache.VALIDATED_BY:
        source = code / f"{module}.py"
        before = source.stat()
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        assert configcache.load(name, os.stat(name)) is None, module
        assert bridge_of(name) == "br0"  # validated again, and cached with the new key
        assert configcache.load(name, os.stat(name)) is not None, module


def test_validated_by_names_every_module_that_validates():
    """Parsing a config with every kind of table runs code of no project module outside
    VALIDATED_BY but those that only carry errors (function calls traced once every
    module is loaded: loading only defines things)."""
    script = f"""
import sys
from qemu_ifhooks.config import parse_config
import qemu_ifhooks.portconfig, qemu_ifhooks.vxlan
ran = set()
def trace(frame, event, arg):
    if event == "call" and frame.f_code.co_name != "<module>":
        ran.add(frame.f_code.co_filename)
sys.setprofile(trace)
parse_config({EVERYTHING!r}, "c.toml")
sys.setprofile(None)
print(" ".join(sorted(ran)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    package = str(ROOT / "qemu_ifhooks") + "/"
    ran = {path[len(package):-3] for path in done.stdout.split() if path.startswith(package)}
    assert {"config", "vxlan", "portconfig", "record"} <= ran, ran  # the control
    assert ran - {"errors"} <= set(configcache.VALIDATED_BY), ran


EVERYTHING = {
    "defaults": {"offload_check": "warn", "vlan": 0},
    "vlan": {"0": {"bridge": "br0", "uplink": "eth0", "mtu": 1400, "match": ["web*"],
                   "port_security": "ip", "isolated": True, "guest_rx_mbit": 100},
             "7": {"bridge": "br7", "vxlan": {"vni": 5007, "local": "203.0.113.1",
                                             "dev": "eth1",
                                             "remotes": ["203.0.113.2", "203.0.113.3"]}},
             "8": {"bridge": "br8", "vxlan": {"vni": 5008, "local": "203.0.113.1",
                                             "dev": "eth1", "evpn": True}},
             "10": {"bridge": "trunk0", "uplink": "eth2", "tag": 10},
             "20": {"bridge": "trunk0", "uplink": "eth2", "tag": 20}},
    "port": {"web1-*": {"mac": "52:54:00:12:34:56", "ipv4": ["192.0.2.10"],
                        "ipv6": ["2001:db8::10"]}},
    "evpn": {"asn": 65000, "peers": ["203.0.113.2", "203.0.113.3"]},
}


def test_every_kind_of_config_comes_back_from_the_cache_as_it_was_parsed(tmp_path, run_dir):
    """Records of every kind (segments, VXLAN, ports, EVPN) survive the cache."""
    import tomllib

    parsed = parse_config(EVERYTHING, "c.toml")
    assert configcache.decode(marshal.loads(marshal.dumps(configcache.encode(parsed)))) \
        == parsed
    # and through the file, as a hook reads it
    text = tomllib_dump(EVERYTHING)
    assert tomllib.loads(text) == EVERYTHING
    name = aged(tmp_path / "c.toml", text)
    first = load_config(name)
    assert Path(configcache.cache_path(name)).exists()
    assert read_config(name) == first == parse_config(EVERYTHING, name)


def test_a_cached_config_of_every_kind_loads_no_schema_module(tmp_path, run_dir):
    """A hook on a host with VXLAN segments and [port] tables reads them from the cache
    without loading the schema, the VXLAN planner or the port parser."""
    name = aged(tmp_path / "c.toml", tomllib_dump(EVERYTHING))
    script = f"""
import sys
from qemu_ifhooks import configcache
configcache.RUN_DIR = {str(run_dir)!r}
from qemu_ifhooks.configfile import load_config
load_config({name!r})
print(" ".join(sorted(m for m in sys.modules if m.startswith("qemu_ifhooks."))))
"""
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           cwd=ROOT, check=True).stdout.split() for _ in range(2)]
    assert "qemu_ifhooks.config" in runs[0]  # the control: the first run parsed it
    assert not {"qemu_ifhooks.config", "qemu_ifhooks.vxlan",
                "qemu_ifhooks.portconfig"} & set(runs[1]), runs[1]


def tomllib_dump(document: dict) -> str:
    """Just enough TOML for EVERYTHING (tables of tables, inline tables, arrays)."""
    import json

    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)

    lines = []
    for table, body in document.items():
        if all(isinstance(x, dict) for x in body.values()) and table in ("vlan", "port"):
            for key, sub in body.items():
                lines.append(f'[{table}."{key}"]')
                lines.extend(f"{k} = {value(x)}" for k, x in sub.items())
        else:
            lines.append(f"[{table}]")
            lines.extend(f"{k} = {value(x)}" for k, x in body.items())
    return "\n".join(lines) + "\n"


def test_a_file_changing_while_read_is_not_cached(tmp_path, run_dir, monkeypatch):
    """Between the stat that makes the key and the read, the file changes: the bytes
    read are not the ones the key describes."""
    path = tmp_path / "c.toml"
    name = aged(path, BR0)

    def miss_then_edit(config_path, st):
        with open(path, "r+") as f:  # someone saves right after the hook's fstat
            f.write(BR9)
        return None

    monkeypatch.setattr(configcache, "load", miss_then_edit)
    assert read_config(name).segments[0].bridge == "br9"
    assert not Path(configcache.cache_path(name)).exists()


def test_an_unwritable_run_dir_only_costs_a_parse(tmp_path, run_dir, monkeypatch):
    name = aged(tmp_path / "c.toml", BR0)
    monkeypatch.setattr(configcache, "RUN_DIR", "/proc/qemu-ifhooks-nonexistent")
    assert bridge_of(name) == "br0"
