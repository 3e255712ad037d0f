# qemu-ifhooks: every target installs what it needs (Debian 12 or 13, as root).
#   sudo make demo    the hooks at work: QEMU, two VLANs, a guest pinging each LAN
#   sudo make test    the whole test suite (unit, namespaces, concurrency, QEMU, guest)

PYTHON      ?= /usr/bin/python3
VENV        ?= .venv
GUEST_DIR   ?= build/guest
STRICT      ?= 1
PYTEST_ARGS ?=
# The Debian 13 root that tests/test_debian13.py runs the suite in (on other releases).
DEBIAN13_ROOT ?= build/debian13

# Debian packages the demo and the tests use (frr: the EVPN tests run zebra and bgpd
# per namespace); the third line builds and checks the .deb and the .rpm (make deb,
# make rpm, tests/test_packaging.py); debootstrap makes the Debian 13 root of
# tests/test_debian13.py; the last line is the libvirt tier's daemon, its QEMU driver
# and virsh (tests/test_libvirt.py).
APT_PACKAGES = python3-venv python3-pip iproute2 ethtool util-linux qemu-system-x86 \
               busybox-static cpio kmod strace mandoc man-db nftables iptables frr \
               build-essential debhelper dh-python pybuild-plugin-pyproject python3-all \
               python3-hatchling python3-installer lintian systemd rpm rpmlint \
               debootstrap \
               libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients

# Debian packages only the benchmark uses (bench/README.md): the naive hook it compares
# against, the plot, and GNU time for the peak RSS.
BENCH_APT_PACKAGES = python3-pyroute2 python3-matplotlib time
BENCH_ARGS ?=

VENV_STAMP = $(VENV)/.installed

.PHONY: all deps venv guest demo test unit deb rpm debian13-root clean

all: venv

deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q </dev/null && apt-get install -y -q --no-install-recommends $$missing </dev/null; \
	fi

$(VENV_STAMP): pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(VENV_STAMP)

guest: deps
	tools/build-guest.sh $(GUEST_DIR)

demo: venv guest
	$(VENV)/bin/qemu-ifhooks demo --guest-dir $(GUEST_DIR)

# Skips say why; with STRICT=1 (the default) a tier that cannot run fails instead.
test: venv guest
	QEMU_IFHOOKS_STRICT=$(STRICT) QEMU_IFHOOKS_GUEST_DIR=$(GUEST_DIR) \
	  $(VENV)/bin/python -m pytest -ra $(PYTEST_ARGS)

# The tests that need neither root nor QEMU.
unit: venv
	$(VENV)/bin/python -m pytest -ra tests/test_config.py tests/test_hookname.py \
	  tests/test_plan.py tests/test_configcache.py tests/test_install.py tests/test_cli_usage.py \
	  tests/test_man.py \
	  $(PYTEST_ARGS)

# Packages, built from a copy of the tree in a temporary directory; results in dist/.
deb: deps
	packaging/build.sh deb dist

rpm: deps
	packaging/build.sh rpm dist

# A Debian 13 root with the same packages, rebuilt when stale (tools/debian-root.sh).
debian13-root: deps
	tools/debian-root.sh build $(DEBIAN13_ROOT) trixie $(APT_PACKAGES)

# Hook latency, scaling, burst and memory against Debian's /etc/qemu-ifup and a naive
# pyroute2 hook, in a network namespace of its own: bench/results.md and a PNG plot.
.PHONY: bench
# Its packages join the project's (a target-specific value reaches deps too).
bench: APT_PACKAGES += $(BENCH_APT_PACKAGES)
bench: deps
	/usr/bin/python3 bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache
