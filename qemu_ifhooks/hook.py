"""The hook program QEMU runs as script=/downscript= (one multi-call executable).

`qemu-ifhook TAP` under the name ifup-br0, ifdown-vlan1, qemu-ifup, ... (see hookname.py).
This is the hot path: it imports only the standard library and the project's small
modules; pyroute2 stays out of it.
"""

from __future__ import annotations

import posix  # not os: see env.py
import sys

from .actions import attach, detach
from .apply import refusal
from .attachments import DIR as ATTACHED_DIR
from .attachments import forget, remember
from .configfile import load_config
from .errors import HookError, UsageError, run_guarded
from .hookname import IFUP, HookName, parse_hook_name, resolve_segment
from .ifname import ifname_problem
from .log import ActionLog, warn
from .netlink import Netlink

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import List, Optional

    from .netlink import Link


def run(hook: HookName, tap: str, label: str, config_path: Optional[str] = None) -> None:
    """One hook action, logged with its result and duration whatever the outcome."""
    log = ActionLog(hook.action, tap)
    try:
        problem = ifname_problem(tap)
        if problem:
            raise UsageError(f"invalid interface name {tap!r}: {problem}")
        config = load_config(config_path)
        segment = resolve_segment(config, hook, tap)
        log.bridge, log.vlan = segment.bridge, segment.vlan
        try:
            with Netlink() as nl:
                if hook.action == IFUP:
                    link = attach(nl, segment, tap, log.op, lambda message: warn(label, message),
                                  config.ports)
                    _remember(link, segment, log)
                else:
                    detach(nl, segment, tap, log.op, log.note)
                    forget(tap)
        except OSError as error:  # a query refused; operations raise HookErrors already
            raise refusal("a netlink request", error) from None
    except HookError as error:
        log.finish("failed", error.status, str(error))
        raise
    except Exception as error:
        log.finish("failed", 70, f"{type(error).__name__}: {error}")
        raise
    log.finish("ok")


def _remember(tap: Link, segment, log: ActionLog) -> None:
    """Record the attachment for `qemu-ifhooks up`. Best effort: the TAP is attached
    already, and nothing about a record may fail the VM's start."""
    try:
        saved = remember(tap.name, tap.index, segment.vlan, segment.bridge,
                         posix.getppid())  # QEMU, or libvirtd
    except Exception:  # noqa: BLE001 - see above
        saved = False
    if not saved:
        log.note(f"could not record the attachment under {ATTACHED_DIR}; 'qemu-ifhooks up' "
                 f"will not put {tap.name} back if {segment.bridge} is rebuilt")


def main(argv: Optional[List[str]] = None, config: Optional[str] = None) -> None:
    """`config`: the file an installed entry always reads (install --config); None:
    $QEMU_IFHOOKS_CONFIG, else the default."""
    argv = sys.argv if argv is None else argv
    keep_standard_fds_taken()
    name = argv[0].rpartition("/")[2] if argv else "qemu-ifhook"
    if len(argv) != 2:
        exit_now(run_guarded(name, lambda: _usage(name)))
    tap = argv[1]
    label = f"{name}: {tap}"
    exit_now(run_guarded(label, lambda: run(parse_hook_name(name), tap, label, config)))


def keep_standard_fds_taken() -> None:
    """A caller may start the hook with stdin, stdout or stderr closed. The first
    socket or file the hook opens would then get that number, and a message meant for
    stderr could land in it: hold each missing one on /dev/null."""
    for fd in (0, 1, 2):
        try:
            posix.fstat(fd)
        except OSError:
            posix.open("/dev/null", posix.O_RDWR)  # takes the lowest free number: this one


def exit_now(status: int) -> None:
    """End the process without the interpreter's orderly shutdown, which tears down
    every module and adds about 1.5 ms to each VM start. Nothing is left to clean up:
    the hook's sockets, lock and files are closed and its log lines written."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the stream was closed when the hook started
                stream.flush()
        except (OSError, ValueError):
            pass  # QEMU closed the pipe: nothing more to say to it
    posix._exit(status)


def _usage(name: str) -> None:
    raise UsageError(f"usage: {name} TAP (QEMU runs it with the TAP name as the only argument)")


if __name__ == "__main__":
    main()
