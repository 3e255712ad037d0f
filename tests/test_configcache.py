"""The parse cache of the config file (qemu_ifhooks/configcache.py): used when the file
is unchanged, never when it changed, ignored when it cannot be trusted.

Files younger than RACY_SECONDS are never cached, so the tests that need a cache wait
that long once (`aged`): a file's ctime cannot be set back.
"""

from __future__ import annotations

import marshal
import os
import time
from pathlib import Path

import pytest

from qemu_ifhooks import config as config_module
from qemu_ifhooks import configcache
from qemu_ifhooks.config import load_config, read_toml

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
    key, document = marshal.loads(cache.read_bytes())
    assert key == configcache.cache_key(name, os.stat(name))
    assert document == {"vlan": {"0": {"bridge": "br0"}}}


@pytest.mark.parametrize("mode", [0o666, 0o620])
def test_a_cache_others_could_write_is_ignored(tmp_path, run_dir, mode):
    name = aged(tmp_path / "c.toml", BR0)
    assert bridge_of(name) == "br0"
    cache = Path(configcache.cache_path(name))
    key, _ = marshal.loads(cache.read_bytes())
    cache.write_bytes(marshal.dumps((key, {"vlan": {"0": {"bridge": "evil0"}}})))
    os.chmod(cache, mode)
    assert configcache.load(name, os.stat(name)) is None
    assert bridge_of(name) == "br0"


def test_a_cache_made_for_another_path_is_ignored(tmp_path, run_dir):
    """Cache files are named by a checksum of the path: the key still names it."""
    name = aged(tmp_path / "c.toml", BR0)
    other = write(tmp_path / "other.toml", BR9)
    st = os.stat(name)
    run_dir.mkdir()
    Path(configcache.cache_path(other)).write_bytes(
        marshal.dumps((configcache.cache_key(name, st), {"vlan": {"0": {"bridge": "br0"}}})))
    os.chmod(configcache.cache_path(other), 0o644)
    assert configcache.load(other, os.stat(other)) is None
    assert bridge_of(other) == "br9"


def test_cached_documents_are_validated_like_parsed_ones(tmp_path, run_dir):
    """The cache saves parsing only: a cached document that fails the schema fails."""
    name = aged(tmp_path / "c.toml", BR0)
    st = os.stat(name)
    run_dir.mkdir()
    Path(configcache.cache_path(name)).write_bytes(
        marshal.dumps((configcache.cache_key(name, st), {"vlan": {"0": {"bridge": 7}}})))
    os.chmod(configcache.cache_path(name), 0o644)
    with pytest.raises(config_module.ConfigError, match="vlan.0.bridge: expected an interface"):
        load_config(name)


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
    assert read_toml(name) == {"vlan": {"0": {"bridge": "br9"}}}
    assert not Path(configcache.cache_path(name)).exists()


def test_an_unwritable_run_dir_only_costs_a_parse(tmp_path, run_dir, monkeypatch):
    name = aged(tmp_path / "c.toml", BR0)
    monkeypatch.setattr(configcache, "RUN_DIR", "/proc/qemu-ifhooks-nonexistent")
    assert bridge_of(name) == "br0"
