#!/bin/bash
# Build a tiny QEMU test guest: OUTDIR/vmlinuz (Debian's 6.1 kernel) and
# OUTDIR/initrd.img (busybox + virtio-net modules + tools/guest-init.sh as /init).
#
# Usage: tools/build-guest.sh OUTDIR
#
# Needs root (apt-get, device nodes). Does nothing when both outputs exist and
# are newer than this script and tools/guest-init.sh.
set -eu
set -o pipefail

# Load order matters: insmod does not resolve dependencies.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net"

die() { echo "build-guest: $*" >&2; exit 1; }
log() { echo "build-guest: $*" >&2; }

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "$0")" && pwd)
self=$here/$(basename "$0")
init_src=$here/guest-init.sh
[ -f "$init_src" ] || die "missing $init_src"

if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] &&
   [ "$out/vmlinuz" -nt "$self" ] && [ "$out/vmlinuz" -nt "$init_src" ] &&
   [ "$out/initrd.img" -nt "$self" ] && [ "$out/initrd.img" -nt "$init_src" ]; then
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
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
busybox=/bin/busybox

# Newest linux-image-6.1.0-N-amd64 (not -cloud/-rt/-unsigned/-dbg).
find_kernel() {
    apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null |
        awk '{print $1}' | sort -V | tail -n 1
}
pkg=$(find_kernel)
if [ -z "$pkg" ]; then
    apt-get update -q </dev/null >&2
    pkg=$(find_kernel)
fi
[ -n "$pkg" ] || die "no linux-image-6.1.0-*-amd64 package found"
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
kmod=$tmp/k/lib/modules/$kver
[ -f "$tmp/k/boot/vmlinuz-$kver" ] || die "no vmlinuz in $deb"

# Initramfs tree.
root=$tmp/root
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
for m in $MODULES; do
    if grep -q "/$m\.ko\$" "$kmod/modules.builtin" 2>/dev/null; then
        log "module $m is built in"
        continue
    fi
    f=$(find "$kmod/kernel" -name "$m.ko*" | head -n 1)
    [ -n "$f" ] || die "module $m not found in $pkg"
    # busybox insmod only takes plain .ko files.
    case $f in
        *.ko) cp "$f" "$root/lib/modules/$m.ko" ;;
        *.ko.xz) command -v xz >/dev/null || apt_install xz-utils
                 xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
        *.ko.zst) command -v zstd >/dev/null || apt_install zstd
                  zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
        *.ko.gz) gzip -dc "$f" >"$root/lib/modules/$m.ko" ;;
        *) die "unknown module format: $f" ;;
    esac
    echo "$m" >>"$root/lib/modules/order"
done

install -m 755 "$init_src" "$root/init"

mkdir -p "$out"
# Write beside the target and rename, so an interrupted build leaves no
# half-written file that the up-to-date check would accept.
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
    cpio -o -H newc --owner=0:0 --quiet) | gzip -9n >"$out/initrd.img.tmp"
cp "$tmp/k/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
mv -f "$out/vmlinuz.tmp" "$out/vmlinuz"
mv -f "$out/initrd.img.tmp" "$out/initrd.img"
log "wrote $out/vmlinuz ($kver) and $out/initrd.img"
