#!/bin/busybox sh
# /init of the full-kernel test tier's initramfs, built by tools/build-guest.sh and
# booted by tests/fullkernel.py.
#
# The guest's root is the host's: its root filesystem, shared read-only over
# virtio-9p (mount tag "hostroot"), is the lower layer of an overlayfs whose upper
# layer is a tmpfs, so the host's python, iproute2, venv and checkout run unchanged
# and every write stays in the guest.  The work directory (tag "work", writable) is
# mounted at the path it has on the host, given as qih.work=PATH.  Then
# PATH/run.sh runs in the new root; its output goes to PATH/run.out.  The guest
# powers off afterwards whatever happened.
#
# No 'set -e': if /init exits, the kernel panics instead of powering off.
set -u
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

while read -r m; do
    insmod "/lib/modules/$m.ko" || echo "QIH-INIT insmod $m failed"
done </lib/modules/order

work=
read -r cmdline </proc/cmdline
set -f
for w in $cmdline; do
    case $w in qih.work=*) work=${w#qih.work=} ;; esac
done
set +f

fail() {
    echo "QIH-INIT $*"
    sync
    poweroff -f
    while :; do sleep 60; done
}

[ -n "$work" ] || fail "no qih.work= on the kernel command line"
p9="trans=virtio,version=9p2000.L,msize=512000"
mkdir -p /lower /rw /newroot
mount -t 9p -o "$p9,ro,cache=loose" hostroot /lower || fail "cannot mount the host's root"
mount -t tmpfs -o mode=755 tmpfs /rw || fail "cannot mount the overlay's tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work root /newroot ||
    fail "cannot mount the overlay"
# What the host has mounted on these is not what the guest should see.
mount -t proc proc /newroot/proc || fail "cannot mount proc"
mount -t sysfs sysfs /newroot/sys || fail "cannot mount sysfs"
mount -t devtmpfs devtmpfs /newroot/dev || fail "cannot mount devtmpfs"
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=755 tmpfs /newroot/run || fail "cannot mount /run"
mkdir -p "/newroot$work" && mount -t 9p -o "$p9,rw" work "/newroot$work" ||
    fail "cannot mount the work directory at $work"

echo "QIH-INIT running $work/run.sh"
chroot /newroot /bin/sh "$work/run.sh" >"/newroot$work/run.out" 2>&1 </dev/null
echo "QIH-INIT run.sh exited with $?"
sync
poweroff -f
while :; do sleep 60; done
