#!/bin/bash
# A Debian root made with debootstrap, for running the test suite on another Debian
# release than the machine's own (the Debian 13 tier on a Debian 12 host):
#
#   tools/debian-root.sh build DIR SUITE PACKAGE...
#       debootstrap SUITE into DIR and install PACKAGE... there, from the mirror this
#       machine's apt uses. Does nothing while DIR was built from the same suite,
#       mirror, package list and ROOT_FORMAT and is younger than MAX_AGE_DAYS (default 7,
#       env QEMU_IFHOOKS_ROOT_MAX_AGE_DAYS); otherwise builds a new root beside DIR
#       and replaces DIR with it only when that succeeded.
#   tools/debian-root.sh run DIR COMMAND...
#       COMMAND as root in DIR, with /proc, /sys, /dev and an empty /run, in mount and
#       PID namespaces of its own: every mount and every process it leaves is gone
#       when COMMAND ends, also on failure; nothing reaches the host's mount table.
#
# Needs root, debootstrap and unshare (util-linux).
set -eu
set -o pipefail

# Part of what a root was built from: bump it when build() changes what goes into
# a root, so that cached roots are rebuilt.
ROOT_FORMAT=1

die() { echo "debian-root: $*" >&2; exit 1; }
log() { echo "debian-root: $*" >&2; }

# The first Debian archive this machine's apt uses (deb822 or one-line format).
host_mirror() {
    local uri
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
          sed -n 's/^URIs:[[:space:]]*\(\S*\/debian\/\?\)$/\1/p' | head -n1)
    [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
          sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(\S*\/debian\/\?\)[[:space:]].*/\2/p' |
          head -n1)
    [ -n "$uri" ] || die "no Debian mirror in /etc/apt/sources.list{,.d}"
    echo "$uri"
}

# Mounts for COMMAND, then COMMAND in DIR as root directory; runs inside the private
# mount namespace made by `run`.
enter() {
    local dir=$1; shift
    # It pivots the root of its mount namespace: only ever inside the fresh mount and
    # PID namespaces `run` makes (where it is PID 1), never in the machine's own.
    [ "$$" -eq 1 ] || die "enter is the second half of 'run'; use: $0 run DIR COMMAND..."
    # `ip netns exec` makes / a slave mount, which needs / to be a mount point.
    mount --bind "$dir" "$dir"
    mount -t proc proc "$dir/proc"            # the PID namespace's own
    mount --rbind /sys "$dir/sys"
    mount --make-rslave "$dir/sys"
    mount --bind /dev "$dir/dev"              # /dev/net/tun, /dev/kvm, ttys
    mount --bind /dev/pts "$dir/dev/pts"
    mount -t tmpfs -o mode=1777 shm "$dir/dev/shm"
    # An empty /run: namespaces made by `ip netns add` inside stay invisible outside.
    mount -t tmpfs -o mode=0755 run "$dir/run"
    mkdir -p "$dir/run/netns" "$dir/run/lock"
    cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
    # The host's own certificate authorities (a TLS-inspecting proxy's, say), so that
    # pip and apt reach from the root what they reach from the host.
    local cas=/usr/local/share/ca-certificates
    if [ -d "$cas" ] && ! diff -rq "$cas" "$dir$cas" >/dev/null 2>&1; then
        rm -rf "${dir:?}$cas"
        cp -r "$cas" "$dir$cas"
        chroot "$dir" update-ca-certificates >/dev/null
    fi
    # DIR becomes this mount namespace's root (pivot_root, not chroot): processes
    # in namespaces made inside then see each other's files by their paths in DIR
    # (/proc/PID/fd of a TAP holder reads /dev/net/tun, not DIR/dev/net/tun).
    cd "$dir"
    pivot_root . .
    umount -l .
    exec /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

run() {
    local dir=$1; shift
    [ -x "$dir/usr/bin/env" ] || die "$dir is not a Debian root (tools/debian-root.sh build)"
    dir=$(cd "$dir" && pwd)
    # --kill-child: if unshare is killed, so is everything started inside.
    exec unshare --mount --propagation private --pid --fork --kill-child \
        "$0" enter "$dir" "$@"
}

build() {
    local dir=$1 suite=$2; shift 2
    local mirror key stamp max_age new
    mirror=$(host_mirror)
    max_age=${QEMU_IFHOOKS_ROOT_MAX_AGE_DAYS:-7}
    key="format=$ROOT_FORMAT $suite $mirror $*"
    stamp="$dir/.qemu-ifhooks-root"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] &&
       [ -z "$(find "$stamp" -mtime +"$((max_age - 1))")" ]; then
        log "$dir is up to date ($suite, built $(date -r "$stamp" +%F))"
        return 0
    fi
    command -v debootstrap >/dev/null || die "needs debootstrap (apt-get install debootstrap)"
    new="$dir.new"
    rm -rf "$new"
    log "debootstrap $suite from $mirror into $new"
    debootstrap --variant=minbase --include=ca-certificates "$suite" "$new" "$mirror" \
        >"$new.log" 2>&1 || { tail -n 30 "$new.log" >&2; die "debootstrap failed (log: $new.log)"; }
    echo "deb $mirror $suite main" >"$new/etc/apt/sources.list"
    echo "deb $mirror $suite-updates main" >>"$new/etc/apt/sources.list"
    # No daemon starts when a package is installed (there is no init in the root).
    printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"
    chmod 0755 "$new/usr/sbin/policy-rc.d" "$new/root"  # tests run programs as nobody
    log "installing $# packages in $new"
    "$0" run "$new" sh -c 'export DEBIAN_FRONTEND=noninteractive;
        apt-get update -q && apt-get install -y -q --no-install-recommends "$@" &&
        apt-get clean' sh "$@" </dev/null >>"$new.log" 2>&1 ||
        { tail -n 30 "$new.log" >&2; die "apt-get install failed (log: $new.log)"; }
    echo "$key" >"$new/.qemu-ifhooks-root"
    rm -rf "$dir" "$new.log"
    mv "$new" "$dir"
    log "$dir ready"
}

[ "$(id -u)" -eq 0 ] || die "must run as root"
what=${1:-}
case "$what" in
build) [ $# -ge 3 ] || die "usage: $0 build DIR SUITE PACKAGE..."; shift; build "$@" ;;
run) [ $# -ge 3 ] || die "usage: $0 run DIR COMMAND..."; shift; run "$@" ;;
enter) shift; enter "$@" ;;  # internal: the second half of `run`
*) die "usage: $0 build DIR SUITE PACKAGE... | run DIR COMMAND..." ;;
esac
