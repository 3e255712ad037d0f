"""Install the hook entries QEMU is pointed at: ifup-<bridge>/ifdown-<bridge> (or
ifup-vlan<N> where a bridge name alone would be ambiguous), each a small generated
launcher that starts this installation's hook program isolated from QEMU's environment."""

from __future__ import annotations

import ast
import os
import re
import stat
import sys
from typing import List, Optional, Tuple

import qemu_ifhooks

from .configmodel import Config, Segment
from .errors import HookError, UnavailableError, UsageError
from .hookname import IFDOWN, IFUP, parse_hook_name, resolve_segment

DEFAULT_DIR = "/etc/qemu-ifhooks"
PROGRAM = "qemu-ifhook"  # entries of earlier versions were symlinks to a program of this name
MARKER = "# qemu-ifhooks hook entry: written by 'qemu-ifhooks install', removed by 'uninstall'"
# The same start as packaging/qemu-ifhook: never pip's console script, which runs `site`
# (and so any sitecustomize.py on QEMU's PYTHONPATH, as root) and costs milliseconds.
LAUNCHER = """\
#!{interpreter} -IS
{marker}
# -IS: ignore PYTHON* variables, the user's site-packages and the current directory
# (-I), and import no site module, so no .pth file runs code (-S). The hook needs only
# the standard library and the one directory below. It acts by this file's name.
# config: the file it reads whatever the caller's environment says (libvirtd and
# systemd clear it); None: $QEMU_IFHOOKS_CONFIG, else the default.
import gc
import sys

gc.disable()  # a run of milliseconds: a collection costs more than it frees
sys.path.append({libdir!r})
# First while the package loads: the path search then lists none of the standard
# library's directories to find it (about 0.03 ms per start). Last again after it, so
# that nothing there can stand in for a standard module the hook imports later.
sys.path.insert(0, sys.path.pop())
from qemu_ifhooks.hookcode import main  # noqa: E402 - after the path is known
sys.path.append(sys.path.pop(0))

main(config={config})
"""
_LIBDIR_LINE = re.compile(r"^sys\.path\.append\((.+)\)$", re.MULTILINE)
_CONFIG_LINE = re.compile(r"^main\(config=(.+)\)$", re.MULTILINE)
_SHEBANG_MAX = 255  # the kernel reads at most 256 bytes of a #! line (BINPRM_BUF_SIZE)


def this_installation() -> Tuple[str, str]:
    """(interpreter, library directory) of the running qemu-ifhooks: what its entries run."""
    interpreter = sys.executable
    libdir = os.path.dirname(os.path.dirname(os.path.abspath(qemu_ifhooks.__file__)))
    line = f"#!{interpreter} -IS"
    if not os.path.isabs(interpreter or "") or any(c.isspace() for c in interpreter) \
            or len(line.encode()) > _SHEBANG_MAX:
        raise UnavailableError(f"cannot start hooks with the interpreter {interpreter!r}: "
                               f"a #! line needs an absolute path without spaces, shorter "
                               f"than {_SHEBANG_MAX} bytes")
    return interpreter, libdir


def launcher(interpreter: str, libdir: str, config: Optional[str] = None) -> str:
    # ascii(): a path that is not UTF-8 (surrogate escapes) still writes as plain text
    return LAUNCHER.format(interpreter=interpreter, marker=MARKER, libdir=libdir,
                           config=ascii(config))


def _read_head(path: str) -> Optional[str]:
    """The first 4 KiB of a regular file (never a FIFO or a device), else None."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(4096).decode("utf-8", "replace")
    except OSError:
        return None


def read_launcher(path: str) -> Optional[Tuple[str, str]]:
    """(interpreter, library directory) of an entry install wrote, else None. Reads only
    a regular file, and only its first 4 KiB."""
    text = _read_head(path)
    if text is None:
        return None
    lines = text.split("\n", 2)
    found = _LIBDIR_LINE.search(text)
    if len(lines) < 3 or lines[1] != MARKER or not lines[0].endswith(" -IS") or not found:
        return None
    try:
        libdir = ast.literal_eval(found.group(1))
    except (ValueError, SyntaxError):
        return None
    return (lines[0][2:-len(" -IS")], libdir) if isinstance(libdir, str) else None


def launcher_config(path: str) -> Optional[str]:
    """The config file an entry install wrote always reads (`install --config`), else
    None (it follows $QEMU_IFHOOKS_CONFIG, or the default)."""
    text = _read_head(path)
    found = _CONFIG_LINE.search(text or "") if read_launcher(path) else None
    try:
        config = ast.literal_eval(found.group(1)) if found else None
    except (ValueError, SyntaxError):
        return None
    return config if isinstance(config, str) else None


def describe(interpreter: str, libdir: str) -> str:
    """How an entry starts the hook, as `check` shows it."""
    return f"{interpreter} -IS on {libdir}"


def _names_resolve_to(config: Config, names: Tuple[str, str], segment: Segment) -> bool:
    try:
        return all(resolve_segment(config, parse_hook_name(name), "") == segment
                   for name in names)
    except HookError:
        return False


def entry_names(config: Config) -> List[Tuple[str, str]]:
    """(ifup, ifdown) names per segment: by bridge when that name maps back to exactly
    this segment, else by VLAN number (always unambiguous)."""
    names = []
    for segment in config.segments:
        by_bridge = (f"{IFUP}-{segment.bridge}", f"{IFDOWN}-{segment.bridge}")
        if _names_resolve_to(config, by_bridge, segment):
            names.append(by_bridge)
        else:
            names.append((f"{IFUP}-vlan{segment.vlan}", f"{IFDOWN}-vlan{segment.vlan}"))
    return names


def is_ours(path: str) -> bool:
    """A launcher install wrote, or an entry of an earlier version (a symlink to the
    hook program), which install replaces and uninstall removes."""
    if os.path.islink(path):
        return os.path.basename(os.readlink(path)) == PROGRAM
    return read_launcher(path) is not None


def install(config: Config, directory: str, force: bool,
            config_file: Optional[str] = None) -> List[str]:
    """Write the entries; with `config_file` they read that file whatever environment
    they are started with."""
    if config_file is not None:
        config_file = os.path.abspath(config_file)  # libvirtd runs hooks from its own cwd
    text = launcher(*this_installation(), config_file)
    paths = [os.path.join(directory, name) for pair in entry_names(config) for name in pair]
    foreign = [p for p in paths if os.path.lexists(p) and not is_ours(p)]
    if foreign and not force:
        raise UsageError(f"{', '.join(foreign)} exist and were not installed by qemu-ifhooks; "
                         f"pass --force to replace them")
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        for path in paths:
            _write_atomically(path, text)
    except OSError as e:
        raise UnavailableError(f"cannot write hooks into {directory}: {e.strerror}") from None
    return paths


def _write_atomically(path: str, text: str) -> None:
    """A VM starting right now runs the old entry or the new one, never half of one."""
    temporary = f"{path}.qemu-ifhooks-new"
    if os.path.lexists(temporary):
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    try:
        os.fchmod(fd, 0o755)  # whatever the umask
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def uninstall(directory: str) -> List[str]:
    removed = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return removed
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith((f"{IFUP}-", f"{IFDOWN}-")) and is_ours(path):
            os.unlink(path)
            removed.append(path)
    return removed
