"""qemu-ifhooks: the admin command line."""

from __future__ import annotations

import argparse
import sys
from typing import List, NoReturn, Optional

from . import __version__
from .configfile import load_config
from .configmodel import MAX_VLAN, parse_vlan
from .errors import ExitStatus, UsageError, run_guarded, say_failure


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line and exit 64, like every other failure."""

    def error(self, message: str) -> NoReturn:
        say_failure(f"{message} (see '{self.prog} --help')")
        sys.exit(ExitStatus.USAGE)


def _vlan(text: str) -> int:
    vlan = parse_vlan(text)
    if vlan is None:
        raise argparse.ArgumentTypeError(f"expected a VLAN number 0..{MAX_VLAN}, got {text!r}")
    return vlan


def build_parser() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: $QEMU_IFHOOKS_CONFIG or "
                             "/etc/qemu-ifhooks/qemu-ifhooks.toml)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="print each kernel operation as its ip equivalent")

    parser = _Parser(prog="qemu-ifhooks", parents=[common],
                     description="QEMU TAP network hooks driven by a TOML bridge-per-VLAN map.")
    parser.add_argument("--version", action="version", version=f"qemu-ifhooks {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    hook = sub.add_parser("hook", parents=[common],
                          help="run an ifup/ifdown hook explicitly (as QEMU would)")
    hook.add_argument("action", choices=["ifup", "ifdown"])
    which = hook.add_mutually_exclusive_group(required=True)
    which.add_argument("--vlan", type=_vlan, metavar="N")
    which.add_argument("--bridge", metavar="BR")
    hook.add_argument("tap", metavar="TAP")

    up = sub.add_parser("up", parents=[common],
                        help="create the configured bridges (before the first guest starts)")
    up.add_argument("vlans", nargs="*", type=_vlan, metavar="VLAN")

    down = sub.add_parser("down", parents=[common], help="delete the configured bridges")
    down.add_argument("vlans", nargs="*", type=_vlan, metavar="VLAN")
    down.add_argument("--force", action="store_true",
                      help="delete bridges that still have ports other than their uplink")

    install = sub.add_parser("install", parents=[common],
                             help="write ifup-*/ifdown-* hook entries for every segment "
                                  "(with --config or $QEMU_IFHOOKS_CONFIG, they always "
                                  "read that file)")
    install.add_argument("--dir", default=None, metavar="DIR",
                         help="where to write them (default /etc/qemu-ifhooks)")
    install.add_argument("--force", action="store_true",
                         help="replace existing files that qemu-ifhooks did not install")

    uninstall = sub.add_parser("uninstall", parents=[common],
                               help="remove the hook entries qemu-ifhooks installed")
    uninstall.add_argument("--dir", default=None, metavar="DIR")

    check = sub.add_parser("check", parents=[common],
                           help="diagnose the host: bridges, uplinks, offloads, firewall, "
                                "hooks (exit 1 when something fails)")
    check.add_argument("--json", action="store_true", help="findings as JSON")
    check.add_argument("--hook-dir", action="append", default=None, metavar="DIR",
                       dest="hook_dirs",
                       help="where the hook entries are installed (default /etc/qemu-ifhooks; "
                            "repeat for several)")

    status = sub.add_parser("status", parents=[common],
                            help="each segment's bridge, uplink and ports, with the QEMU "
                                 "process holding each TAP")
    status.add_argument("--json", action="store_true", help="status as JSON")

    sub.add_parser("frr-config", parents=[common],
                   help="print the FRR (bgpd) stanza for this host's EVPN segments, to merge "
                        "into frr.conf")

    plan = sub.add_parser("plan", parents=[common],
                          help="dry run: what a hook would do, as ip commands")
    plan.add_argument("action", choices=["ifup", "ifdown"])
    plan.add_argument("tap", metavar="TAP")
    plan_which = plan.add_mutually_exclusive_group(required=True)
    plan_which.add_argument("--vlan", type=_vlan, metavar="N")
    plan_which.add_argument("--bridge", metavar="BR")
    plan_which.add_argument("--hook", metavar="NAME",
                            help="a hook name as QEMU runs it (ifup-br0, qemu-ifup, ...)")

    def nics_parser(name: str, what: str, model: str, model_help: str) -> None:
        """qemu-args and libvirt-xml: one NIC per VLAN, on the installed entries."""
        nics = sub.add_parser(name, parents=[common], help=f"{what} for one NIC per VLAN")
        nics.add_argument("vlans", nargs="+", type=_vlan, metavar="VLAN")
        nics.add_argument("--vm", metavar="NAME", default=None,
                          help="VM name: stable MACs and TAP names derive from it")
        nics.add_argument("--model", metavar="M", default=model, help=f"{model_help} (default {model})")
        nics.add_argument("--hook-dir", metavar="DIR", default=None,
                          help="where the hook entries are installed (default /etc/qemu-ifhooks)")
    nics_parser("qemu-args", "QEMU -netdev/-device arguments", "virtio-net-pci", "NIC model")
    nics_parser("libvirt-xml", "libvirt <interface> elements", "virtio", "libvirt NIC model type")

    translate = sub.add_parser("translate", parents=[common],
                               help="translate legacy -net nic,vlan=N/-net tap arguments "
                                    "to -netdev/-device")
    translate.add_argument("legacy", nargs="*", metavar="ARG",
                           help="the legacy QEMU arguments, after '--'")

    broker = sub.add_parser("broker", parents=[common],
                            help="the root service behind the unprivileged bridge helper "
                                 "(QEMU's -netdev bridge,helper=)")
    broker.add_argument("--socket", metavar="PATH", default=None,
                        help="where to listen (default: the socket systemd passes, else "
                             "/run/qemu-ifhooks/broker.sock)")

    demo = sub.add_parser("demo", parents=[common],
                          help="show the hooks at work with QEMU in a throwaway namespace")
    demo.add_argument("--guest-dir", metavar="DIR", default=None,
                      help="guest kernel and initramfs (default: build/guest of the source "
                           "tree or /usr/share/qemu-ifhooks/guest)")
    demo.add_argument("--no-guest", action="store_true",
                      help="start QEMU without a guest (only the hooks run)")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    config_path = getattr(args, "config", None)
    verbose = getattr(args, "verbose", False)
    if args.command == "hook":
        from .hook import run
        from .hookname import HookName

        name = HookName(args.action, vlan=args.vlan, bridge=args.bridge)
        label = f"hook {args.action}: {args.tap}"
        return run_guarded(label, lambda: run(name, args.tap, label, config_path))
    if args.command in ("up", "down"):
        from . import admin

        config = load_config(config_path)
        if args.command == "up":
            return admin.up(config, args.vlans, verbose)
        return admin.down(config, args.vlans, args.force, verbose)
    if args.command == "install":
        from .configfile import ENV_PATH
        from .env import getenv
        from .install import DEFAULT_DIR, install

        # The entries keep reading the config they were made from, wherever it was named.
        chosen = config_path or getenv(ENV_PATH) or None
        for path in install(load_config(config_path), args.dir or DEFAULT_DIR, args.force,
                            chosen):
            print(f"installed {path}")
        return 0
    if args.command == "uninstall":
        from .install import DEFAULT_DIR, uninstall

        for path in uninstall(args.dir or DEFAULT_DIR):
            print(f"removed {path}")
        return 0
    if args.command == "check":
        from .gather import run_check
        from .install import DEFAULT_DIR

        return run_check(config_path, args.hook_dirs or [DEFAULT_DIR], args.json)
    if args.command == "status":
        from .status import run_status

        return run_status(load_config(config_path), args.json)
    if args.command == "frr-config":
        from .frr import frr_stanza

        print(frr_stanza(load_config(config_path)), end="")
        return 0
    if args.command == "plan":
        from .dryrun import dry_run, hook_for

        hook = hook_for(args.action, args.vlan, args.bridge, args.hook)
        for line in dry_run(load_config(config_path), args.action, args.tap, hook):
            print(line)
        return 0
    if args.command == "qemu-args":
        from .install import DEFAULT_DIR
        from .qemuargs import format_args, qemu_args

        argv = qemu_args(load_config(config_path), args.vlans, args.vm, args.model,
                         args.hook_dir or DEFAULT_DIR)
        if args.vm is None:
            print("qemu-ifhooks: qemu-args: warning: without --vm, QEMU picks the TAP names "
                  "and gives every VM the same MACs (52:54:00:12:34:56, ...)", file=sys.stderr)
        print(format_args(argv), end="")
        return 0
    if args.command == "libvirt-xml":
        from .install import DEFAULT_DIR
        from .libvirtxml import libvirt_xml
        from .qemuargs import hook_nics

        if args.vm is not None and not args.vm:
            raise UsageError("--vm: expected a VM name, got an empty string")
        nics = hook_nics(load_config(config_path), args.vlans, args.hook_dir or DEFAULT_DIR)
        print(libvirt_xml(nics, args.vm, args.model), end="")
        return 0
    if args.command == "translate":
        from .qemuargs import format_args
        from .translate import translate

        warnings: List[str] = []
        argv = translate(args.legacy, warnings)
        for warning in warnings:
            print(f"qemu-ifhooks: translate: warning: {warning}", file=sys.stderr)
        print(format_args(argv), end="")
        return 0
    if args.command == "broker":
        from .broker import serve

        return serve(args.socket, config_path)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.guest_dir, not args.no_guest, verbose)
    raise UsageError(f"unknown command {args.command}")  # pragma: no cover


def main(argv: Optional[List[str]] = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # what parse_args() does, with a hint for translate
        hint = "; put the legacy QEMU arguments after '--'" if args.command == "translate" else ""
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    status = [0]

    def body() -> None:
        status[0] = _dispatch(args)
    failure = run_guarded(args.command, body)
    sys.exit(failure or status[0])


if __name__ == "__main__":
    main()
