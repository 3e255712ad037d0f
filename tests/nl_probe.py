"""Run qemu_ifhooks.netlink / .ethtool calls and print the results as JSON.

Meant to run inside a test network namespace:

    ip netns exec NS python tests/nl_probe.py '[{"op": "get_link", "name": "lo"}]'

prints one JSON list with a result per operation.  A raised exception becomes
{"error": "<class name>", "errno": N, "text": ..., "extack": ..., "feature": ...}
(feature: that of bridgevlan.MissingKernelFeature) and does not stop later operations.
Bridge VLANs (bridgevlan.BridgeVlan) come out as [vid, pvid, untagged]. An op names a
method of netlink.Netlink or a function of linkbuild.py or bridgevlan.py.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _jsonable(value):
    from qemu_ifhooks.record import Record

    if isinstance(value, Record):
        out = {name: _jsonable(field) for name, field in value.as_dict().items()}
        for prop in ("is_up", "is_tap"):
            if hasattr(value, prop):
                out[prop] = getattr(value, prop)
        return out
    if isinstance(value, bytes):
        return ":".join(f"{b:02x}" for b in value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _mac(text):
    return bytes.fromhex(text.replace(":", "")) if text is not None else None


def run(ops: list) -> list:
    from qemu_ifhooks import bridgevlan, linkbuild
    from qemu_ifhooks.ethtool import _read_netlink, read_offloads
    from qemu_ifhooks.ethtoolioctl import read_ioctl
    from qemu_ifhooks.netlink import Netlink

    readers = {"read_offloads": read_offloads,  # ethtool netlink, else the ioctl
               "read_offloads_netlink": lambda ifname: _read_netlink(ifname.encode()),
               "read_offloads_ioctl": lambda ifname: read_ioctl(ifname.encode())}

    results = []
    with Netlink() as nl:
        for op in ops:
            args = dict(op)
            name = args.pop("op")
            if "address" in args:
                args["address"] = _mac(args["address"])
            try:
                if name in readers:
                    result = readers[name](**args)
                elif name == "get_link_index":  # index of a name, for later ops
                    result = nl.get_link(args["name"]).index
                elif hasattr(nl, name):
                    result = getattr(nl, name)(**args)
                else:
                    function = getattr(linkbuild, name, None) or getattr(bridgevlan, name)
                    result = function(nl, **args)
                results.append(_jsonable(result))
            except Exception as e:  # reported to the test, not raised
                results.append({"error": type(e).__name__, "errno": getattr(e, "errno", None), "text": str(e),
                                "extack": getattr(e, "extack", None), "feature": getattr(e, "feature", None)})
    return results


def main(argv: list) -> int:
    print(json.dumps(run(json.loads(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
