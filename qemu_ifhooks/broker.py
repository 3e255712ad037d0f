"""The root service behind the unprivileged bridge helper: `qemu-ifhooks broker`.

QEMU running as an ordinary user cannot create a TAP or enslave it. Its bridge helper
(bridgehelper.py) asks this service over a Unix socket; the service identifies the
caller with SO_PEERCRED, checks the segment's allow_users/allow_groups, creates a TAP
owned by the caller, does for it what ifup does (actions.attach) and hands the fd back.
The TAP lives as long as QEMU holds that fd.

Requests are read concurrently, each within a short timeout and at most a few per user,
and granted one at a time: a request takes milliseconds, and a hostile client can hold
only its own connections, never the service's TAPs. When a TAP of the broker's goes,
the kernel says so (linkwatch.py) and the state it left is swept.
"""

from __future__ import annotations

import array
import fcntl
import grp
import os
import pwd
import select
import signal
import socket
import stat
import struct
import threading

from . import brokerproto
from .errors import (ConfigError, HookError, KernelError, PermissionDenied, UsageError,
                     one_line)
from .linkwatch import LinkWatch
from .log import LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_WARNING, emit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

    from .configmodel import Config, Segment

READ_TIMEOUT = 2.0  # seconds a client has to send its request line
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux 4.13; Python names it late
TAP_TEMPLATE = "qhtap%d"  # the kernel picks the number
TAP_PREFIX = TAP_TEMPLATE.partition("%")[0]

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNSETOWNER = 0x400454CC
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000


class Caller:
    """Who is on the other end of the socket, as the kernel says."""

    def __init__(self, pid: int, uid: int, gid: int, groups: Tuple[int, ...]):
        self.pid, self.uid, self.gid, self.groups = pid, uid, gid, groups

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)

    def group_names(self) -> List[str]:
        names = []
        for gid in (self.gid,) + self.groups:
            try:
                names.append(grp.getgrgid(gid).gr_name)
            except KeyError:
                pass
        return names

    def __str__(self) -> str:
        return f"uid={self.uid} pid={self.pid}"


def peer(conn: socket.socket) -> Caller:
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    # The caller's own supplementary groups (as the kernel holds them for the process
    # that connected), not the group database's idea of the user's: a process that
    # dropped its groups does not get them back here.
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 256)
        groups = tuple(array.array("I", raw[:len(raw) - len(raw) % 4]))
    except OSError:
        groups = ()
    return Caller(pid, uid, gid, groups)


def parse_request(data: bytes) -> Tuple[str, bool]:
    """(br, vnet) from one request line; UsageError for anything else."""
    if not data.endswith(b"\n") or data.count(b"\n") != 1:
        raise UsageError("malformed request: expected one line")
    try:
        text = data[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise UsageError("malformed request: not ASCII") from None
    words = text.split(" ")
    if not 1 <= len(words) <= 2 or (len(words) == 2 and words[1] != "vnet"):
        raise UsageError("malformed request: expected 'BR' or 'BR vnet'")
    from .ifname import ifname_problem

    problem = ifname_problem(words[0])
    if problem:
        raise UsageError(f"invalid bridge name {one_line(words[0])!r}: {problem}")
    return words[0], len(words) == 2


def resolve(config: Config, br: str) -> Segment:
    """The segment of --br=: vlan<N>, or the one segment on that bridge."""
    from .hookname import parse_hook_name, resolve_segment

    return resolve_segment(config, parse_hook_name(f"ifup-{br}"), br)


def check_access(segment: Segment, caller: Caller) -> None:
    if caller.uid == 0:
        return
    if caller.user in segment.allow_users:
        return
    if set(caller.group_names()) & set(segment.allow_groups):
        return
    raise PermissionDenied(f"user {caller.user} (uid {caller.uid}) may not use {segment.key} "
                           f"(bridge {segment.bridge}): not in its allow_users or allow_groups")


def create_tap(owner: int, vnet: bool) -> Tuple[int, str]:
    """A new TAP (not persistent: it goes when the last fd closes), owned by `owner`."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet else 0)
        ifreq = struct.pack("16sH22x", TAP_TEMPLATE.encode(), flags)
        ifreq = fcntl.ioctl(fd, TUNSETIFF, ifreq)
        name = ifreq[:16].split(b"\0", 1)[0].decode()
        fcntl.ioctl(fd, TUNSETOWNER, owner)
    except OSError as error:
        os.close(fd)
        raise KernelError(f"cannot create a TAP: {error.strerror}") from None
    return fd, name


def parent_of(pid: int) -> int:
    """The parent of `pid` (QEMU, for a helper QEMU started), or 0."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def grant(config: Config, caller: Caller, br: str, vnet: bool) -> Tuple[int, str, Segment]:
    """The fd of a TAP attached to the segment of `br` (the caller may use it)."""
    from .actions import attach
    from .attachments import remember
    from .netlink import Netlink

    segment = resolve(config, br)
    check_access(segment, caller)
    fd, tap = create_tap(caller.uid, vnet)
    try:
        label = f"broker: {tap}"
        with Netlink() as nl:
            link = attach(nl, segment, tap,
                          lambda command: emit(LOG_INFO, f"{label}: {command}"),
                          lambda message: emit(LOG_WARNING, f"{label}: warning: {message}"),
                          config.ports, qemu_pid=parent_of(caller.pid), helper_br=br)
            remember(tap, link.index, segment.vlan, segment.bridge, parent_of(caller.pid))
    except BaseException:
        os.close(fd)  # the TAP goes with it
        raise
    return fd, tap, segment


SWEEP_RETRY = 5.0  # seconds before a sweep that failed is tried again


def sweep() -> None:
    """Remove the nftables rules, ifb devices and attachment records of the broker's
    TAPs that are gone: they outlive their TAP, and no downscript runs for a TAP the
    helper got. Only names of the broker's own pattern: the hooks' TAPs are their
    downscripts' (and `up`'s)."""
    from .apply import Executor
    from .attachments import forget
    from .guards import leftovers
    from .netlink import Netlink
    from .reattach import read_attachments

    with Netlink() as nl:
        for op in leftovers(nl):
            if op.ifname.startswith(TAP_PREFIX):
                Executor(nl, trace=lambda command: emit(
                    LOG_INFO, f"broker: sweep {op.ifname}: {command}")).apply([op])
                emit(LOG_INFO, f"broker: swept {op.ifname}: its TAP is gone")
        for record in read_attachments():
            if not record.tap.startswith(TAP_PREFIX):
                continue
            link = nl.get_link(record.tap)
            if link is None or link.index != record.ifindex:
                forget(record.tap)


# Requests are read concurrently (a client that stalls holds only its own connection,
# up to READ_TIMEOUT) but granted one at a time: GRANT_LOCK serialises the kernel work
# and the sweep. A user may hold PER_UID_CONNECTIONS at once: one user's flood of idle
# connections cannot lock others out.
PER_UID_CONNECTIONS = 8
MAX_CONNECTIONS = 128
GRANT_LOCK = threading.Lock()


def handle(conn: socket.socket, config_path: Optional[str],
           caller: Optional[Caller] = None) -> None:
    """One connection: read the request, reply, log. Never raises for a client's
    doing."""
    caller = caller or peer(conn)
    conn.settimeout(READ_TIMEOUT)
    fd = -1
    try:
        try:
            data = read_line(conn)
            br, vnet = parse_request(data)
            from .configfile import load_config

            with GRANT_LOCK:
                fd, tap, segment = grant(load_config(config_path), caller, br, vnet)
        except HookError as error:
            emit(LOG_WARNING, f"broker: refused {caller}: {error}")
            reply(conn, f"error {error.status} {one_line(str(error))}")
            return
        except OSError as error:  # a netlink query refused (operations raise HookErrors)
            from .apply import refusal

            error = refusal("a netlink request", error)
            emit(LOG_WARNING, f"broker: refused {caller}: {error}")
            reply(conn, f"error {error.status} {one_line(str(error))}")
            return
        emit(LOG_INFO, f"broker: granted {caller} {tap} on {segment.key} "
                       f"(bridge {segment.bridge})")
        reply(conn, "ok", fd)
    finally:
        if fd >= 0:
            os.close(fd)  # QEMU holds the TAP now (or nobody, and it is gone)


class Disconnected(UsageError):
    """The client went away or stalled before its request was complete."""


def read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:  # whatever follows a newline makes the request malformed
        try:
            chunk = conn.recv(brokerproto.MAX_REQUEST - len(data))
        except socket.timeout:
            raise Disconnected(f"no complete request within {READ_TIMEOUT:g} s") from None
        except OSError as error:
            raise Disconnected(f"connection lost: {error.strerror}") from None
        if not chunk:
            raise Disconnected("connection closed before the request was complete")
        data += chunk
        if len(data) >= brokerproto.MAX_REQUEST and b"\n" not in data:
            raise UsageError(f"malformed request: longer than {brokerproto.MAX_REQUEST} bytes")
    return data


def reply(conn: socket.socket, line: str, fd: int = -1) -> None:
    data = (line + "\n").encode("utf-8", "backslashreplace")[:brokerproto.MAX_REPLY]
    fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))] if fd >= 0 else []
    try:
        conn.sendmsg([data], fds)
    except OSError:
        pass  # the client is gone; the TAP goes when our copy of the fd closes


# --- the service --------------------------------------------------------------------

def activated_socket() -> Optional[socket.socket]:
    """The listening socket systemd passed (socket activation), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for the programs we may run
    sock = socket.socket(fileno=3)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise ConfigError("socket activation passed fd 3, which is not a Unix stream socket")
    os.set_inheritable(3, False)
    return sock


def bind(path: str) -> socket.socket:
    """A listening socket at `path` that anyone may connect to (callers are checked by
    their credentials); a stale socket file is replaced, anything else is refused.
    It listens before it gets its name: a client that finds the path is never refused
    for coming between bind() and listen()."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise UsageError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: a stale socket of a stopped service
        else:
            raise UsageError(f"{path}: another broker is listening there")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    unnamed = f"{path}.{os.getpid()}"
    try:
        sock.bind(unnamed)
    except BaseException:
        sock.close()
        raise
    try:
        os.chmod(unnamed, 0o666)
        sock.listen(64)
        os.rename(unnamed, path)
    except BaseException:
        sock.close()
        try:
            os.unlink(unnamed)
        except FileNotFoundError:
            pass  # renamed just before a stop: the next start replaces it as stale
        raise
    return sock


def serve(socket_path: Optional[str], config_path: Optional[str]) -> int:
    if os.geteuid() != 0:
        raise PermissionDenied("the broker creates TAPs for others: run it as root")
    from .configfile import load_config

    def stop(signum, frame):
        raise SystemExit(0)
    # Before the socket exists: a stop that comes as soon as it does still removes it.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    load_config(config_path)  # refuse to start on a config that does not load
    watch = LinkWatch()  # before the socket: nothing to undo if it cannot be had
    active: dict = {}  # uid: connections being served
    active_lock = threading.Lock()

    def worker(conn: socket.socket, caller: Caller) -> None:
        try:
            with conn:
                try:
                    handle(conn, config_path, caller)
                except Exception as error:  # noqa: BLE001 - a bug must not stop the service
                    import traceback

                    for line in traceback.format_exc().splitlines():
                        emit(LOG_DEBUG, f"broker: {line}")
                    emit(LOG_ERR, f"broker: internal error: {type(error).__name__}: "
                                  f"{error}")
                    reply(conn, "error 70 internal error in the broker (see its log)")
        finally:
            with active_lock:
                active[caller.uid] -= 1
                if not active[caller.uid]:
                    del active[caller.uid]

    sock = activated_socket() if socket_path is None else None
    path = None
    if sock is None:
        requested = socket_path or brokerproto.DEFAULT_SOCKET
        sock = bind(requested)
        path = requested  # ours to remove from here on
    try:
        emit(LOG_INFO, f"broker: listening on {path or 'the socket systemd passed'}")
        # The rules, ifb devices and record of a TAP outlive it: sweep when one of ours
        # goes (the kernel's RTM_DELLINK), when the kernel dropped such events, and once
        # at start for what a broker before this one left.
        sweep_due = True
        sock.setblocking(False)
        while True:
            if sweep_due:
                try:
                    with GRANT_LOCK:
                        sweep()
                    sweep_due = False
                except Exception as error:  # noqa: BLE001 - tried again SWEEP_RETRY later
                    emit(LOG_ERR, f"broker: sweep failed: {type(error).__name__}: "
                                  f"{error}")
            try:
                ready, _, _ = select.select([sock, watch], [], [],
                                            SWEEP_RETRY if sweep_due else None)
            except InterruptedError:
                continue
            if watch in ready:
                gone = watch.removed()
                if gone is None or any(name.startswith(TAP_PREFIX) for name in gone):
                    sweep_due = True
            if sock not in ready:
                continue
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # the client gave up before we took it
            except OSError as error:  # e.g. EMFILE: wait for fds to free, never exit
                emit(LOG_ERR, f"broker: accept failed: {error.strerror}")
                import time

                time.sleep(0.1)
                continue
            conn.setblocking(True)  # not inherited from the listening socket
            caller = peer(conn)
            with active_lock:
                busy = active.get(caller.uid, 0)
                refused = busy >= PER_UID_CONNECTIONS or sum(active.values()) >= MAX_CONNECTIONS
                if not refused:
                    active[caller.uid] = busy + 1
            if refused:
                emit(LOG_WARNING, f"broker: refused {caller}: too many connections")
                reply(conn, "error 75 too many concurrent requests; try again")
                conn.close()
                continue
            threading.Thread(target=worker, args=(conn, caller), daemon=True).start()
    finally:
        sock.close()
        watch.close()
        # A grant under way finishes (or rolls back) before the process ends.
        GRANT_LOCK.acquire(timeout=30)
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass
        emit(LOG_INFO, "broker: stopped")
