"""Hold TAP (or TUN) devices open as QEMU does: open /dev/net/tun, TUNSETIFF, keep the fd.

usage: tapholder.py [--tun] NAME...   prints "ready" once all exist; exits (closing the
fds, so the kernel deletes the devices) when stdin reaches EOF.
"""

import fcntl
import os
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_TAP, IFF_NO_PI = 0x0001, 0x0002, 0x1000


def main() -> None:
    args = sys.argv[1:]
    mode = IFF_TUN if args and args[0] == "--tun" else IFF_TAP
    names = args[1:] if mode == IFF_TUN else args
    fds = []
    for name in names:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", os.fsencode(name), mode | IFF_NO_PI))
        fds.append(fd)
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
