"""Logging of hook actions: syslog (ident qemu-ifhooks), and a trace file when
QEMU_IFHOOKS_LOG names one (QEMU passes its environment on to the hooks).

Syslog lines go to /dev/log as glibc's syslog() sends them (openlog with LOG_PID,
facility daemon), over the `_socket` module the hook has loaded for netlink already:
the `syslog` module would cost every hook start some 0.1 ms to load.
"""

from __future__ import annotations

import posix  # not os: see env.py
import sys
import time

import _socket  # not `socket`: see nlsocket.py

from .env import getenv
from .errors import one_line

TYPE_CHECKING = False  # typing costs milliseconds of every hook start
if TYPE_CHECKING:
    from typing import Optional

IDENT = "qemu-ifhooks"
ENV_TRACE = "QEMU_IFHOOKS_LOG"
LOG_PATH = "/dev/log"
# <syslog.h>: the priorities used here, and the facility
LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG = 3, 4, 5, 6, 7
LOG_DAEMON = 3 << 3
_syslog_socket = None  # connected by the first line, as glibc connects
_syslog_missing_until = 0.0  # no daemon: lines are dropped until then (monotonic)
NO_SYSLOG_RETRY = 1.0  # seconds


def _syslog(priority: int, message: str) -> None:
    """One line in RFC 3164 form, as glibc writes it: `<PRI>Mmm dd hh:mm:ss ident[pid]: `.
    No syslog daemon, or one that does not keep up, costs the line, never the hook; with
    none, the next second's lines do not try again (a hook's three lines, one try)."""
    global _syslog_socket, _syslog_missing_until
    line = (f"<{LOG_DAEMON | priority}>{time.strftime('%b %e %H:%M:%S')} "
            f"{IDENT}[{posix.getpid()}]: {message}").encode()
    sock = _syslog_socket  # one reference: the broker logs from several threads
    if sock is not None:
        try:
            sock.send(line, _socket.MSG_DONTWAIT)
            return
        except OSError:  # the daemon restarted: connect again, as glibc does
            sock.close()
            _syslog_socket = None
    now = time.monotonic()
    if now < _syslog_missing_until:
        return
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    except OSError:
        return
    try:
        sock.connect(LOG_PATH)
        sock.send(line, _socket.MSG_DONTWAIT)
    except OSError:
        sock.close()
        _syslog_missing_until = now + NO_SYSLOG_RETRY
        return
    _syslog_socket = sock


def emit(priority: int, message: str) -> None:
    message = one_line(message)  # syslog takes no undecodable bytes (a TAP name can hold them)
    _syslog(priority, message)
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
    emit(LOG_WARNING, f"{label}: warning: {message}")
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
        emit(LOG_INFO, f"{self.action} {self.tap}: {command}")

    def note(self, message: str) -> None:
        emit(LOG_NOTICE, f"{self.action} {self.tap}: {message}")

    def finish(self, result: str, status: int = 0, message: str = "") -> None:
        duration = (time.monotonic() - self.started) * 1000
        priority = LOG_INFO if status == 0 else LOG_ERR
        detail = f" error={message!r}" if message else ""
        emit(priority, f"{self.fields()} result={result} status={status} "
                       f"duration_ms={duration:.1f}{detail}")
