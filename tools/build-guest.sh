#!/bin/bash
# Build the QEMU test guests from the kernel that the running Debian release's
# linux-image-amd64 depends on (6.1 on Debian 12, 6.12 on Debian 13):
#   OUTDIR/vmlinuz           the kernel
#   OUTDIR/initrd.img        busybox + virtio-net modules + tools/guest-init.sh as /init
#                            (the demo guest, and the real-QEMU tests)
#   OUTDIR/initrd-hostroot.img
#                            busybox + virtio-9p and overlayfs modules +
#                            tools/hostroot-init.sh as /init: the full-kernel test
#                            tier (tests/fullkernel.py), which boots with the host's
#                            root filesystem as its own
#   OUTDIR/modules/lib/modules/KVER
#                            the kernel package's modules with their modules.dep, for
#                            `modprobe -d OUTDIR/modules` inside the full-kernel tier
#   OUTDIR/kernel-release    KVER
#
# Usage: tools/build-guest.sh OUTDIR
#
# Needs root (apt-get, device nodes). Does nothing when every output exists and is
# newer than this script and the init scripts.
set -eu
set -o pipefail

# What each initramfs loads; their dependencies (which differ between kernel
# versions) come from modules.dep and are loaded first.
NET_MODULES="virtio_pci virtio_net"
HOSTROOT_MODULES="virtio_pci 9pnet_virtio 9p overlay"

die() { echo "build-guest: $*" >&2; exit 1; }
log() { echo "build-guest: $*" >&2; }

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "$0")" && pwd)
sources="$here/$(basename "$0") $here/guest-init.sh $here/hostroot-init.sh"
outputs="vmlinuz initrd.img initrd-hostroot.img kernel-release"

up_to_date() {
    for o in $outputs; do
        [ -f "$out/$o" ] || return 1
        for s in $sources; do [ "$out/$o" -nt "$s" ] || return 1; done
    done
    [ -f "$out/modules/lib/modules/$(cat "$out/kernel-release")/modules.dep" ]
}
for s in $sources; do [ -f "$s" ] || die "missing $s"; done
if up_to_date; then
    log "$out is up to date"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root"
export DEBIAN_FRONTEND=noninteractive

# apt-get install PKG... ; retry once after 'apt-get update' since a fresh
# machine may have no package lists yet.
apt_install() {
    log "installing $*"
    apt-get install -y -q --no-install-recommends "$@" </dev/null >&2 ||
        { apt-get update -q </dev/null >&2 &&
          apt-get install -y -q --no-install-recommends "$@" </dev/null >&2; }
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# The dynamic 'busybox' package also ships /bin/busybox, so check the package.
need=()
installed busybox-static || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
busybox=/bin/busybox

# The versioned kernel package that this release's linux-image-amd64 depends on.
find_kernel() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | sort -V | tail -n 1
}
pkg=$(find_kernel)
if [ -z "$pkg" ]; then
    apt-get update -q </dev/null >&2
    pkg=$(find_kernel)
fi
[ -n "$pkg" ] || die "cannot tell which kernel linux-image-amd64 depends on (apt-cache depends linux-image-amd64)"
kver=${pkg#linux-image-}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# apt-get download drops to the _apt user; let it write here to avoid a warning.
if id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi

log "fetching $pkg"
(cd "$tmp" && apt-get download -q "$pkg" </dev/null >&2)
deb=$(ls "$tmp"/"$pkg"_*.deb)
log "using $(basename "$deb")"
dpkg-deb -x "$deb" "$tmp/k"
# Debian 12 ships the modules in /lib/modules, Debian 13 (merged /usr) in /usr/lib/modules.
kmod=
for d in "$tmp/k/lib/modules/$kver" "$tmp/k/usr/lib/modules/$kver"; do
    [ -d "$d/kernel" ] && kmod=$d
done
[ -n "$kmod" ] || die "no modules for $kver in $deb"
[ -f "$tmp/k/boot/vmlinuz-$kver" ] || die "no vmlinuz in $deb"

# The whole module tree, for modprobe -d inside the full-kernel tier: the package
# ships no modules.dep, so depmod makes one.
tree=$out/modules.tmp
rm -rf "$tree"
mkdir -p "$tree/lib/modules"
cp -a "$kmod" "$tree/lib/modules/$kver"
depmod -b "$tree" "$kver"
kmod=$tree/lib/modules/$kver

# load_order MODULE... : the modules' files (relative to $kmod), each after its
# dependencies, once each; built-in modules are left out.
load_order() {
    local seen=" " m
    visit() {  # $1: a path as modules.dep names it
        case $seen in *" $1 "*) return ;; esac
        seen="$seen$1 "
        local d
        for d in $(sed -n "s|^$1: *||p" "$kmod/modules.dep"); do visit "$d"; done
        echo "$1"
    }
    for m in "$@"; do
        local path
        path=$(grep -E "/$m\.ko(\.[a-z]+)?:" "$kmod/modules.dep" | cut -d: -f1)
        if [ -z "$path" ]; then
            grep -qE "/$m\.ko\$" "$kmod/modules.builtin" || die "module $m not found in $pkg"
            continue
        fi
        visit "$path"
    done
}

# make_initramfs OUTFILE INIT MODULE... : busybox, the modules (and what they depend
# on) as plain .ko files loaded in order by INIT from /lib/modules/order, and INIT as
# /init.
make_initramfs() {
    local file=$1 init=$2
    shift 2
    local root=$tmp/root-$(basename "$file")
    mkdir -p "$root"/bin "$root"/sbin "$root"/usr/bin "$root"/usr/sbin \
        "$root"/proc "$root"/sys "$root"/dev "$root"/tmp "$root"/lib/modules
    cp "$busybox" "$root/bin/busybox"
    # Applet symlinks now, so boot does not spend time on 'busybox --install'.
    "$busybox" --list-full | while read -r app; do
        [ -e "$root/$app" ] || ln -s /bin/busybox "$root/$app"
    done
    # The kernel opens /dev/console before /init runs; without it /init has no stdout.
    mknod -m 600 "$root/dev/console" c 5 1
    mknod -m 666 "$root/dev/null" c 1 3

    : >"$root/lib/modules/order"
    local f m
    for f in $(load_order "$@"); do
        m=$(basename "$f"); m=${m%%.ko*}
        # busybox insmod only takes plain .ko files.
        case $f in
            *.ko) cp "$kmod/$f" "$root/lib/modules/$m.ko" ;;
            *.ko.xz) command -v xz >/dev/null || apt_install xz-utils
                     xz -dc "$kmod/$f" >"$root/lib/modules/$m.ko" ;;
            *.ko.zst) command -v zstd >/dev/null || apt_install zstd
                      zstd -qdc "$kmod/$f" >"$root/lib/modules/$m.ko" ;;
            *.ko.gz) gzip -dc "$kmod/$f" >"$root/lib/modules/$m.ko" ;;
            *) die "unknown module format: $f" ;;
        esac
        echo "$m" >>"$root/lib/modules/order"
    done
    install -m 755 "$init" "$root/init"
    # Written beside the target and renamed by the caller, so an interrupted build
    # leaves no half-written file that the up-to-date check would accept.
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
        cpio -o -H newc --owner=0:0 --quiet) | gzip -9n >"$file.tmp"
}

mkdir -p "$out"
make_initramfs "$out/initrd.img" "$here/guest-init.sh" $NET_MODULES
make_initramfs "$out/initrd-hostroot.img" "$here/hostroot-init.sh" $HOSTROOT_MODULES
rm -rf "$out/modules"
mv "$tree" "$out/modules"

cp "$tmp/k/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
echo "$kver" >"$out/kernel-release.tmp"
for o in vmlinuz initrd.img initrd-hostroot.img kernel-release; do
    mv -f "$out/$o.tmp" "$out/$o"
done
log "wrote $out/vmlinuz ($kver), initrd.img, initrd-hostroot.img and modules/"
