"""Logging of hook actions: syslog (ident qemu-ifhooks), and a trace file when
QEMU_IFHOOKS_LOG names one (QEMU passes its environment on to the hooks)."""

from __future__ import annotations

import posix  # not os: see env.py
import sys
import syslog
import time

from .env import getenv
from .errors import one_line

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Optional

IDENT = "qemu-ifhooks"
ENV_TRACE = "QEMU_IFHOOKS_LOG"
_opened = False


def emit(priority: int, message: str) -> None:
    global _opened
    message = one_line(message)  # syslog takes no undecodable bytes (a TAP name can hold them)
    if not _opened:
        syslog.openlog(IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)
        _opened = True
    syslog.syslog(priority, message)
    trace = getenv(ENV_TRACE)
    if trace:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {IDENT}[{posix.getpid()}]: {message}\n"
        try:
            # One write with O_APPEND: lines from concurrent hooks do not interleave.
            fd = posix.open(trace, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC,
                            0o644)
            try:
                posix.write(fd, line.encode())
            finally:
                posix.close(fd)
        except OSError:
            pass  # tracing must never fail a hook


def warn(label: str, message: str) -> None:
    """A warning goes to the log and to stderr, which QEMU shows to the user."""
    emit(syslog.LOG_WARNING, f"{label}: warning: {message}")
    if sys.stderr is None:  # QEMU's stderr closed: the log has it
        return
    try:
        sys.stderr.write(f"{IDENT}: {one_line(f'{label}: warning: {message}')}\n")
    except (OSError, ValueError):
        pass


class ActionLog:
    """One hook action: each operation as its `ip` equivalent, then one result line with
    tap, bridge, vlan, action, result and duration."""

    def __init__(self, action: str, tap: str):
        self.action = action
        self.tap = tap
        self.bridge: Optional[str] = None
        self.vlan: Optional[int] = None
        self.started = time.monotonic()

    def fields(self) -> str:
        return f"action={self.action} tap={self.tap} bridge={self.bridge or '-'} " \
               f"vlan={'-' if self.vlan is None else self.vlan}"

    def op(self, command: str) -> None:
        emit(syslog.LOG_INFO, f"{self.action} {self.tap}: {command}")

    def note(self, message: str) -> None:
        emit(syslog.LOG_NOTICE, f"{self.action} {self.tap}: {message}")

    def finish(self, result: str, status: int = 0, message: str = "") -> None:
        duration = (time.monotonic() - self.started) * 1000
        priority = syslog.LOG_INFO if status == 0 else syslog.LOG_ERR
        detail = f" error={message!r}" if message else ""
        emit(priority, f"{self.fields()} result={result} status={status} "
                       f"duration_ms={duration:.1f}{detail}")
