"""`qemu-ifhooks translate`: legacy `-net nic,vlan=N ... -net tap,vlan=N,...` arguments
(removed in QEMU 3.0: "Invalid parameter 'vlan'") as `-netdev`/`-device` arguments.

A legacy VLAN was a hub joining every NIC and backend on it. One NIC and one backend
become a plain pair (`-netdev tap,id=net0` + `-device MODEL,netdev=net0`); anything
else keeps the hub: every member gets its own `-netdev hubport,hubid=N`. Arguments
that are not `-net` are passed through unchanged. Pure: argument lists in and out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set

from .errors import UsageError
from .ifname import ifname_problem
from .qemuargs import Option, device_arg, device_model, hubport_arg, is_qemu_id, netdev_arg
from .qemuopts import split_opts

# The -net backends that -netdev has under the same name and options.
BACKENDS = ("tap", "user", "bridge", "socket", "l2tpv3", "vde", "netmap")
# -net nic options and their -device names (model and vlan are handled apart).
NIC_OPTIONS = {"macaddr": "mac", "name": "id", "addr": "addr", "vectors": "vectors"}
# What `-net nic` without model= gives on QEMU's default x86 machine (pc).
LEGACY_DEFAULT_MODEL = "e1000"


@dataclass
class _Nic:
    model: str
    options: List[Option]  # already in -device terms


@dataclass
class _Backend:
    kind: str
    name: Optional[str]
    options: List[Option]


@dataclass
class _Vlan:
    nics: List[_Nic] = field(default_factory=list)
    backends: List[_Backend] = field(default_factory=list)


def _vlan_number(value: Optional[str], text: str) -> int:
    if value is None or not value.isdigit() or not value.isascii():
        raise UsageError(f"-net {text}: vlan: expected a number, got {value!r}")
    return int(value)


def _parse_net(text: str) -> tuple:
    """One -net value as (kind, vlan or None, options without kind and vlan)."""
    options = split_opts(text)
    kind, value = options[0]
    if value is not None:
        if kind != "type":
            raise UsageError(f"-net {text}: expected a type first (nic, tap, user, ...)")
        kind = value
    vlan = None
    rest: List[Option] = []
    for key, value in options[1:]:
        if key == "":
            raise UsageError(f"-net {text}: empty option")
        if key == "vlan":
            vlan = _vlan_number(value, text)
        else:
            rest.append((key, value))
    return kind, vlan, rest


def _nic(text: str, options: List[Option]) -> tuple:
    """A -net nic as (_Nic, its netdev= if it names one)."""
    model = LEGACY_DEFAULT_MODEL
    netdev = None
    out: List[Option] = []
    for key, value in options:
        if value is None:
            raise UsageError(f"-net {text}: {key}: expected {key}=VALUE")
        if key == "model":
            model = device_model(value)
        elif key == "netdev":
            netdev = value
        elif key in NIC_OPTIONS:
            if key == "name" and not is_qemu_id(value):
                raise UsageError(f"-net {text}: name {value!r} is not a valid QEMU id (a "
                                 f"letter, then letters, digits, '-', '.', '_')")
            out.append((NIC_OPTIONS[key], value))
        else:
            raise UsageError(f"-net {text}: cannot translate option {key!r} of -net nic "
                             f"(known: model, macaddr, name, addr, vectors, vlan)")
    return _Nic(model, out), netdev


def _backend(kind: str, text: str, options: List[Option]) -> _Backend:
    if kind == "dump":
        raise UsageError(f"-net {text}: cannot translate -net dump (QEMU removed it): add "
                         f"-object filter-dump,id=dump0,netdev=NETDEV,file=FILE to the "
                         f"translated netdev instead")
    if kind not in BACKENDS:
        raise UsageError(f"-net {text}: cannot translate backend type {kind!r} "
                         f"(known: nic, none, {', '.join(BACKENDS)})")
    name = None
    rest: List[Option] = []
    for key, value in options:
        if key in ("name", "id"):
            name = value
        else:
            if kind == "tap" and key == "ifname" and value is not None:
                problem = ifname_problem(value)
                if problem:
                    raise UsageError(f"-net {text}: ifname {value!r}: {problem}")
            rest.append((key, value))
    if name is not None and not is_qemu_id(name):
        raise UsageError(f"-net {text}: name {name!r} is not a valid QEMU id (a letter, then "
                         f"letters, digits, '-', '.', '_')")
    return _Backend(kind, name, rest)


def _passed_through_ids(argv: Sequence[str]) -> Set[str]:
    """ids already used by -netdev/-device/-nic arguments that are passed through."""
    ids = set()
    for option, value in zip(argv, argv[1:]):
        if option.lstrip("-") in ("netdev", "device", "nic"):
            ids.update(v for k, v in split_opts(value)[1:] if k == "id" and v)
    return ids


class _Ids:
    """Unique QEMU ids: given names are kept (twice is an error), generated ones skip them."""

    def __init__(self, taken: Set[str], given: Sequence[str]):
        self.taken = set(taken)
        for name in given:
            if name in self.taken:
                raise UsageError(f"QEMU id {name!r} is used twice")
            self.taken.add(name)

    def new(self, wanted: str) -> str:
        ident, n = wanted, 1
        while ident in self.taken:
            ident, n = f"{wanted}.{n}", n + 1
        self.taken.add(ident)
        return ident


def _emit_vlan(number: int, vlan: _Vlan, ids: _Ids, warnings: List[str]) -> List[str]:
    argv: List[str] = []
    if len(vlan.nics) == 1 and len(vlan.backends) == 1:
        nic, backend = vlan.nics[0], vlan.backends[0]
        ident = backend.name or ids.new(f"net{number}")
        argv += netdev_arg(backend.kind, ident, backend.options)
        argv += device_arg(nic.model, ident, options=nic.options)
        return argv
    # A hub, as the VLAN was: one hubport per member.
    if not vlan.backends:
        warnings.append(f"vlan {number} has no backend: its NICs only reach each other")
    if not vlan.nics:
        warnings.append(f"vlan {number} has no NIC: its backends only reach each other")
    ports = 0
    for k, backend in enumerate(vlan.backends):
        single = len(vlan.backends) == 1
        ident = backend.name or ids.new(f"net{number}" if single else f"net{number}-{k}")
        argv += netdev_arg(backend.kind, ident, backend.options)
        argv += hubport_arg(ids.new(f"hub{number}-{ports}"), number, ident)
        ports += 1
    for nic in vlan.nics:
        port = ids.new(f"hub{number}-{ports}")
        argv += hubport_arg(port, number)
        argv += device_arg(nic.model, port, options=nic.options)
        ports += 1
    return argv


def translate(argv: Sequence[str], warnings: Optional[List[str]] = None) -> List[str]:
    """The arguments with every -net replaced; the translated network arguments take the
    place of the first -net. `warnings` collects what QEMU would only warn about."""
    warnings = [] if warnings is None else warnings
    vlans: Dict[int, _Vlan] = {}
    direct: List[List[str]] = []  # -net nic,netdev=ID: already modern, kept in place
    out: List[str] = []
    marker: Optional[int] = None  # where the network arguments go
    given: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg not in ("-net", "--net"):
            out.append(arg)
            i += 1
            continue
        if i + 1 >= len(argv):
            raise UsageError(f"{arg}: missing its value")
        text = argv[i + 1]
        i += 2
        if marker is None:
            marker = len(out)
        kind, number, options = _parse_net(text)
        if kind == "none":
            direct.append(["-nic", "none"])
            continue
        if kind == "nic":
            nic, netdev = _nic(text, options)
            if netdev is not None:
                if number is not None:
                    raise UsageError(f"-net {text}: vlan and netdev exclude each other")
                direct.append(device_arg(nic.model, netdev, options=nic.options))
            else:
                vlans.setdefault(0 if number is None else number, _Vlan()).nics.append(nic)
            given += [v for k, v in nic.options if k == "id" and v]
            continue
        backend = _backend(kind, text, options)
        if backend.name:
            given.append(backend.name)
        vlans.setdefault(0 if number is None else number, _Vlan()).backends.append(backend)
    if marker is None:
        raise UsageError("no -net arguments to translate (pass them after '--')")
    ids = _Ids(_passed_through_ids(out), given)
    network: List[str] = []
    for number, vlan in vlans.items():
        network += _emit_vlan(number, vlan, ids, warnings)
    for args in direct:
        network += args
    return out[:marker] + network + out[marker:]
