"""Install the hook entries QEMU is pointed at: ifup-<bridge>/ifdown-<bridge> symlinks to
the one hook program (or ifup-vlan<N> where a bridge name alone would be ambiguous)."""

from __future__ import annotations

import os
import shutil
import sys
from typing import List, Optional, Tuple

from .config import Config, Segment
from .errors import HookError, UnavailableError, UsageError
from .hookname import IFDOWN, IFUP, parse_hook_name, resolve_segment

DEFAULT_DIR = "/etc/qemu-ifhooks"
PROGRAM = "qemu-ifhook"
LIBEXEC_PROGRAM = "/usr/libexec/qemu-ifhooks/qemu-ifhook"


def hook_program() -> str:
    """The installed hook program: beside this CLI (a virtualenv's bin/), else the
    packaged one, else on PATH. QEMU_IFHOOKS_HOOK overrides."""
    explicit = os.environ.get("QEMU_IFHOOKS_HOOK")
    candidates = [explicit] if explicit else [
        os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), PROGRAM),
        LIBEXEC_PROGRAM,
        shutil.which(PROGRAM),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    raise UnavailableError(f"cannot find the hook program {PROGRAM} "
                           f"(looked beside {sys.argv[0]}, in {LIBEXEC_PROGRAM} and on PATH)")


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


def is_ours(path: str, program: Optional[str] = None) -> bool:
    """A symlink to the hook program: by its usual name, or to `program` itself."""
    if not os.path.islink(path):
        return False
    target = os.readlink(path)
    return os.path.basename(target) == PROGRAM or target == program


def install(config: Config, directory: str, force: bool) -> List[str]:
    program = hook_program()
    paths = [os.path.join(directory, name) for pair in entry_names(config) for name in pair]
    foreign = [p for p in paths if os.path.lexists(p) and not is_ours(p, program)]
    if foreign and not force:
        raise UsageError(f"{', '.join(foreign)} exist and were not installed by qemu-ifhooks; "
                         f"pass --force to replace them")
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        for path in paths:
            # Replace atomically: a VM starting right now sees the old or the new entry.
            temporary = f"{path}.qemu-ifhooks-new"
            if os.path.lexists(temporary):
                os.unlink(temporary)
            os.symlink(program, temporary)
            os.replace(temporary, path)
    except OSError as e:
        raise UnavailableError(f"cannot write hooks into {directory}: {e.strerror}") from None
    return paths


def uninstall(directory: str) -> List[str]:
    try:
        program: Optional[str] = hook_program()
    except UnavailableError:  # the program may already be gone (package removed)
        program = None
    removed = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return removed
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith((f"{IFUP}-", f"{IFDOWN}-")) and is_ours(path, program):
            os.unlink(path)
            removed.append(path)
    return removed
