"""Fuzzing what comes from outside: config files, argv, hook names, the environment.

Property-based (hypothesis), with a fixed seed and a bounded number of examples so that
`make test` is repeatable and quick; a longer campaign with another seed:

    QEMU_IFHOOKS_FUZZ_EXAMPLES=20000 QEMU_IFHOOKS_FUZZ_SEED=7 make test PYTEST_ARGS=tests/test_fuzz.py

For every input: an exit status from the table (never 70, an internal error), no
traceback, exactly one line on stderr of bounded length when the hook fails, and the
namespace's links, bridge ports, nftables ruleset and qdiscs (`ip -j -d link`,
`bridge -j link`, `nft -j list ruleset`, `tc -j qdisc`) unchanged on failure. The real hook runs in a namespace of the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st

from conftest import sh
from qemu_ifhooks.config import parse_config, parse_toml
from qemu_ifhooks.errors import MAX_LINE, ConfigError, ExitStatus

STATUSES = set(ExitStatus.table().values()) - {ExitStatus.SOFTWARE, ExitStatus.FAILED}
EXAMPLES = int(os.environ.get("QEMU_IFHOOKS_FUZZ_EXAMPLES", "0")) or None


def campaign(default_examples: int):
    """Fixed seed (derandomized) unless QEMU_IFHOOKS_FUZZ_SEED says otherwise."""
    chosen = os.environ.get("QEMU_IFHOOKS_FUZZ_SEED")
    fixed = settings(max_examples=EXAMPLES or default_examples, deadline=None, database=None,
                     derandomize=chosen is None, print_blob=True,
                     suppress_health_check=list(HealthCheck))

    def apply(test):
        test = fixed(test)
        return seed(int(chosen))(test) if chosen is not None else test
    return apply


# --- configs ------------------------------------------------------------------------------

KEYS = ["bridge", "uplink", "tag", "mtu", "match", "offload_check", "create", "stp",
        "forward_delay", "allow_addressed_uplink", "trunk", "vlan", "port_security", "isolated",
        "guest_rx_mbit", "guest_tx_mbit", "mac", "ipv4", "ipv6"]
NAMES = st.sampled_from(["br0", "br1", "eth0", "tap0", "lo", "b%d", "br 0", "br/0", "x" * 16,
                         "$(id)", "eth0.101", "brü", "", "..", "ip", "mac", "52:54:00:12:34:56",
                         "ff:ff:ff:ff:ff:ff", "192.0.2.10", "192.0.2.0/24", "192.0.2.1/24", "2001:db8::1",
                         "2001:db8::/129", "fe80::1%eth0", "tap*"])
odd_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
scalars = st.one_of(st.integers(-2**70, 2**70), st.integers(0, 70000), st.booleans(),
                    st.floats(allow_nan=False), NAMES, odd_text,
                    st.sampled_from(["enforce", "warn", "off"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(st.sampled_from(KEYS) | odd_text, inner, max_size=3), max_leaves=8)
segment = st.dictionaries(st.sampled_from(KEYS) | odd_text, values, max_size=6)
vlan_keys = st.one_of(st.integers(0, 4200).map(str), st.sampled_from(["00", "-1", "x", "1.5"]), odd_text)
documents = st.fixed_dictionaries({}, optional={
    "defaults": st.dictionaries(st.sampled_from(KEYS) | odd_text, values, max_size=4),
    "vlan": st.dictionaries(vlan_keys, segment | values, max_size=3),
    "port": st.dictionaries(NAMES | odd_text, segment | values, max_size=3),
})


def toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, int) else repr(float(value)).replace("inf", "inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_text(document: dict) -> str:
    """The document as TOML, tables of tables as [a.b] headers (their values inline)."""
    lines = []
    for name, table in document.items():
        if not isinstance(table, dict):
            lines.append(f"{toml_key(name)} = {toml_value(table)}")
            continue
        plain = {k: v for k, v in table.items() if not (name == "vlan" and isinstance(v, dict))}
        lines.append(f"[{toml_key(name)}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in plain.items()]
        for key, sub in table.items():
            if key not in plain:
                lines.append(f"[{toml_key(name)}.{toml_key(key)}]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


@st.composite
def config_bytes(draw) -> bytes:
    """A generated document as TOML, sometimes damaged by a few random edits."""
    data = toml_text(draw(documents)).encode()
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=4)) + data[at + draw(st.integers(0, 3)):]
    return data


@campaign(3000)
@given(config_bytes())
def test_any_config_is_a_config_or_one_line_of_config_error(data):
    try:
        parse_config(parse_toml("f.toml", data), "f.toml")
    except ConfigError as error:
        text = str(error)
        assert error.status == ExitStatus.CONFIG
        assert text.startswith("f.toml: ") and "\n" not in text and len(text) < MAX_LINE, text


# --- the hook, with generated configs, argv, names and environments ------------------------

VALIDISH = st.builds(
    lambda bridge, uplink, extra: f'[vlan.0]\nbridge = "{bridge}"\n' + (f'uplink = "{uplink}"\n' if uplink else "")
    + extra,
    st.sampled_from(["br0", "br0", "br0", "br0", "br1", "tap0", "eth0", "lo"]),
    st.sampled_from([None, None, "eth0", "eth0", "eth0", "tap0", "br0", "nope0"]),
    st.sampled_from(["", "mtu = 9000\n", "mtu = 68\n", "mtu = 65535\n", "create = false\n", "tag = 5\n",
                     'offload_check = "warn"\n', "stp = true\nforward_delay = 2\n",
                     "[defaults]\nvlan = 0\n", 'match = ["t*"]\n', 'port_security = "mac"\n',
                     'port_security = "ip"\nguest_rx_mbit = 5\n[port."tap0"]\nmac = "52:54:00:12:34:56"\n',
                     "isolated = true\nguest_tx_mbit = 1\n"]))
HOOK_NAMES = st.one_of(*[st.sampled_from(["ifup-br0", "ifdown-br0", "ifup-vlan0", "qemu-ifup"])] * 3,
                       st.sampled_from(["ifup-br0", "ifdown-br0", "ifup-vlan0", "ifdown-vlan0", "qemu-ifup",
                                        "qemu-ifdown", "ifup-", "ifup-vlan99999", "ifup-vlan00", "ifup-br1"]),
                       st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)),
                               min_size=1, max_size=20)
                       .filter(lambda n: n not in (".", "..", "qemu-ifhooks.toml", "hooks.log")))
TAP_ARGS = st.one_of(*[st.sampled_from(["tap0", "tap0", "tap0", "eth0", "br0", "lo", "lan0", "tap9", "", "-h"])] * 3,
                     st.text(max_size=20).map(lambda t: t.replace("\0", "")),
                     st.binary(min_size=1, max_size=16).map(lambda b: os.fsdecode(b.replace(b"\0", b""))))
# Mostly the one argument QEMU passes, sometimes none or more.
ARGS = st.one_of(*[TAP_ARGS.map(lambda tap: [tap])] * 4, st.lists(TAP_ARGS, max_size=3))
ENVS = st.fixed_dictionaries({}, optional={
    "QEMU_IFHOOKS_LOCK_TIMEOUT": st.sampled_from(["0", "-1", "nan", "1e400", "x", ""]),
    "LANG": st.sampled_from(["C", "xx_XX.UTF-8", "", "C.UTF-8"]),
    "LC_ALL": st.sampled_from(["C", "POSIX", "de_DE.ISO-8859-1"]),
    "QEMU_IFHOOKS_LOG": st.sampled_from(["/nonexistent/dir/log", "/dev/full", "/proc/version"]),
})


def state(ns) -> tuple:
    links = json.loads(sh("ip", "-n", ns.name, "-j", "-d", "link", "show", errors="surrogateescape").stdout)
    ports = json.loads(sh("bridge", "-n", ns.name, "-j", "link", errors="surrogateescape").stdout or "[]")
    ruleset = ns.run("nft", "-j", "list", "ruleset", check=True, errors="surrogateescape").stdout
    qdiscs = sh("tc", "-n", ns.name, "-j", "qdisc", "show", errors="surrogateescape").stdout
    return (sorted((l["ifname"], l.get("master"), l["mtu"], tuple(l["flags"]), l.get("address")) for l in links),
            sorted((p["ifname"], p.get("master"), p.get("state")) for p in ports),
            [i for i in json.loads(ruleset)["nftables"] if "metainfo" not in i],
            sorted(json.dumps(q, sort_keys=True) for q in json.loads(qdiscs or "[]")
                   if q["kind"] not in ("noqueue", "pfifo_fast")))


def restore(ns, base: tuple) -> None:
    """Back to the base scene after a hook that succeeded (and changed things)."""
    names = {link[0] for link in base[0]}
    for link in state(ns)[0]:
        if link[0] not in names:
            ns.ip("link", "del", link[0], check=False)
    for name in ("tap0", "eth0"):
        ns.ip("link", "set", name, "nomaster", check=False)
    ns.ip("link", "set", "tap0", "down", "mtu", "1500", check=False)
    ns.ip("link", "set", "eth0", "up", "mtu", "1500", check=False)
    ns.run("tc", "qdisc", "del", "dev", "tap0", "clsact")
    ns.run("nft", "delete", "table", "bridge", "qemu_ifhooks")


@pytest.fixture
def scene(make_netns, hooks):
    ns = make_netns("qih-fz")
    ns.veth("eth0", "lan0")
    ns.hold_taps("tap0")
    return ns, hooks


@campaign(250)
@given(config=st.one_of(VALIDISH, VALIDISH, VALIDISH, config_bytes().map(lambda b: b.decode("utf-8", "replace"))),
       name=HOOK_NAMES, args=ARGS, env=ENVS, mode=st.sampled_from([0o644, 0o644, 0o664, 0o600]))
def test_any_hook_run_keeps_the_contract(scene, config, name, args, env, mode):
    ns, hooks = scene
    base = state(ns)
    hooks.write_config(config, mode)
    entry = hooks.entry(name)
    done = subprocess.run(["ip", "netns", "exec", ns.name, str(entry), *args], env=hooks.env(**env),
                          stdin=subprocess.DEVNULL, capture_output=True)
    stderr = done.stderr.decode("utf-8", "replace")
    lines = stderr.splitlines()
    event(f"exit status {done.returncode}")  # shown by --hypothesis-show-statistics
    assert done.returncode in STATUSES, (done.returncode, stderr)
    assert "Traceback" not in stderr
    assert all(line.startswith("qemu-ifhooks: ") and len(line) <= MAX_LINE + 20 for line in lines), stderr
    if done.returncode == 0:
        assert all(": warning: " in line for line in lines), stderr
        restore(ns, base)
    else:
        assert len(lines) == 1, stderr
    assert state(ns) == base, (done.returncode, stderr)
