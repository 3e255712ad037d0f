"""qemu-ifhooks: QEMU TAP network hooks driven by a TOML bridge-per-VLAN map."""

__version__ = "0.1.0"
