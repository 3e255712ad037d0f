#!/usr/bin/python3
"""The easy hook a sysadmin would write: put the TAP QEMU passes on br0 with pyroute2.

The benchmark's third contender (bench/run.py), run as QEMU would: `naive_pyroute2_hook.py TAP`.
"""
import sys

from pyroute2 import IPRoute

with IPRoute() as ipr:
    tap = ipr.link_lookup(ifname=sys.argv[1])[0]
    bridge = ipr.link_lookup(ifname="br0")[0]
    ipr.link("set", index=tap, master=bridge, state="up")
