"""The broker's wire protocol, shared by the root service (broker.py) and the
unprivileged bridge helper (bridgehelper.py).

One request per connection, one line: `BR` or `BR vnet` (BR as QEMU's --br= gives it:
a bridge name or vlan<N>). One reply: `ok` with the TAP's fd attached (SCM_RIGHTS), or
`error STATUS MESSAGE` (STATUS from errors.ExitStatus) with no fd.
"""

from __future__ import annotations

DEFAULT_SOCKET = "/run/qemu-ifhooks/broker.sock"
ENV_SOCKET = "QEMU_IFHOOKS_BROKER"
MAX_REQUEST = 64  # bytes of a request line, newline included: a name is 15 at most
MAX_REPLY = 2048  # bytes of a reply line: a one-line error, cut by errors.one_line


def socket_path() -> str:
    from .env import getenv

    return getenv(ENV_SOCKET) or DEFAULT_SOCKET


def encode_request(br: str, vnet: bool) -> bytes:
    return f"{br}{' vnet' if vnet else ''}\n".encode("utf-8", "surrogateescape")
