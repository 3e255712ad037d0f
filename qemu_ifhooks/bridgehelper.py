"""The bridge helper QEMU runs for `-netdev bridge,br=BR,helper=PATH`, unprivileged.

QEMU runs it as `PATH [--use-vnet] --fd=N --br=BR` and waits for a TAP fd on the
socket N (SCM_RIGHTS); libvirt's session mode runs it itself, as
`PATH --use-vnet --br=BR --fd=N`, and hands the fd to QEMU. This helper holds no privilege: it asks the root service
(`qemu-ifhooks broker`, broker.py) for the TAP and relays the fd, or passes the
service's one-line refusal on to QEMU's stderr and exits with its status.
"""

from __future__ import annotations

import array
import socket
import sys

from . import brokerproto
from .errors import ExitStatus, HookError, PermissionDenied, UnavailableError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

REPLY_TIMEOUT = 60.0  # seconds: the service may wait for a bridge lock (lock.py)
NAME = "bridge-helper"
USAGE = f"usage: {NAME} [--use-vnet] --fd=N --br=BR (QEMU runs it for -netdev bridge)"


class Refused(HookError):
    """The service's refusal, with its status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_args(argv: List[str]) -> Tuple[bool, int, str]:
    vnet, fd, br = False, None, None
    for arg in argv:
        if arg == "--use-vnet":
            vnet = True
        elif arg.startswith("--fd=") and arg[5:].isdigit() and arg[5:].isascii():
            fd = int(arg[5:])
        elif arg.startswith("--br="):
            br = arg[5:]
        else:
            raise UsageError(f"unexpected argument {arg!r}; {USAGE}")
    if fd is None or br is None:
        raise UsageError(USAGE)
    if not br or "\n" in br or " " in br or len(br.encode("utf-8", "surrogateescape")) > 15:
        raise UsageError(f"invalid bridge name {br!r}: expected a bridge name or vlan<N>")
    return vnet, fd, br


def ask(path: str, br: str, vnet: bool) -> int:
    """The TAP fd from the service at `path`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(REPLY_TIMEOUT)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise UnavailableError(f"no qemu-ifhooks broker listening at {path}; start it "
                                   f"('systemctl start qemu-ifhooks-broker.socket' or "
                                   f"'qemu-ifhooks broker')") from None
        except PermissionError:
            raise PermissionDenied(f"cannot connect to the broker at {path}: "
                                   f"permission denied") from None
        except OSError as error:
            raise UnavailableError(f"cannot connect to the broker at {path}: "
                                   f"{error.strerror}") from None
        try:
            sock.sendall(brokerproto.encode_request(br, vnet))
            data, ancillary, _, _ = sock.recvmsg(brokerproto.MAX_REPLY,
                                                 socket.CMSG_SPACE(4 * 4))
        except socket.timeout:
            raise UnavailableError(f"the broker at {path} did not answer within "
                                   f"{REPLY_TIMEOUT:g} s") from None
        except OSError as error:
            raise UnavailableError(f"the broker at {path} failed: {error.strerror}") from None
    finally:
        sock.close()
    fds = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(array.array("i", payload[:len(payload) - len(payload) % 4]))
    line = data.decode("utf-8", "replace").rstrip("\n")
    if line == "ok" and len(fds) == 1:
        return fds[0]
    for fd in fds:  # not what was asked for: hold nothing
        import posix

        posix.close(fd)
    words = line.split(" ", 2)
    if len(words) == 3 and words[0] == "error" and words[1].isdigit():
        raise Refused(int(words[1]) or ExitStatus.SOFTWARE, words[2])
    raise UnavailableError(f"the broker at {path} gave an unexpected answer")


def relay(qemu_fd: int, tap_fd: int) -> None:
    """Give QEMU the TAP the way qemu-bridge-helper does: 1 byte and the fd."""
    out = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=qemu_fd)
    try:
        out.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [tap_fd]))])
    except OSError as error:
        raise UnavailableError(f"cannot pass the TAP to QEMU on fd {qemu_fd}: "
                               f"{error.strerror}") from None
    finally:
        out.detach()


def run(argv: List[str]) -> None:
    vnet, qemu_fd, br = parse_args(argv)
    relay(qemu_fd, ask(brokerproto.socket_path(), br, vnet))


def main(argv: Optional[List[str]] = None) -> None:
    from .errors import run_guarded
    from .hook import exit_now, keep_standard_fds_taken

    keep_standard_fds_taken()
    exit_now(run_guarded(NAME, lambda: run(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
