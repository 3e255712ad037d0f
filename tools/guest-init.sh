#!/bin/busybox sh
# /init of the test guest built by tools/build-guest.sh.
#
# Kernel parameters:
#   qih.net=ADDR/PREFIX,PEER[;ADDR/PREFIX,PEER...]
#       entry i configures the i-th Ethernet interface (eth0, eth1, ...),
#       then pings PEER and prints "QIH-PING <ifname> <PEER> OK|FAIL".
#   qih.wait=SECONDS   how long to keep retrying each ping (default 20).
#   qih.size=BYTES     ICMP payload of those pings (default 56; 1472 fills a
#                      1500-byte MTU, and the kernel sets DF on it)
#   qih.watch=PEER,COUNT
#       after those pings, ping PEER COUNT times, 5 a second, printing each reply
#       ("QIH-WATCH seq=N") and then "QIH-WATCHED <sent> <received>"
#   qih.stay=1         after QIH-DONE stay up (answering pings) instead of
#                      powering off: a ping target, or a guest to migrate
# Then prints QIH-DONE and powers off.
#
# No 'set -e': if /init exits the kernel panics instead of powering off, so
# every step is checked by hand and the script always reaches poweroff.
set -u

export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

if [ -f /lib/modules/order ]; then
    while read -r m; do
        insmod "/lib/modules/$m.ko" || echo "QIH-WARN insmod $m failed"
    done </lib/modules/order
fi

net=""
wait_s=20
size=56
watch=""
stay=0
read -r cmdline </proc/cmdline
set -f # cmdline words are not globs
for w in $cmdline; do
    case $w in
        qih.net=*) net=${w#qih.net=} ;;
        qih.wait=*) wait_s=${w#qih.wait=} ;;
        qih.size=*) size=${w#qih.size=} ;;
        qih.watch=*) watch=${w#qih.watch=} ;;
        qih.stay=*) stay=${w#qih.stay=} ;;
    esac
done
set +f
case $wait_s in '' | *[!0-9]*) wait_s=20 ;; esac
case $size in '' | *[!0-9]*) size=56 ;; esac

uptime_s() {
    read -r up _ </proc/uptime
    echo "${up%%.*}"
}

# Ethernet devices (ARPHRD_ETHER, backed by hardware), natural order so eth10
# sorts after eth9. Drivers probe asynchronously: wait briefly for them.
list_eth() {
    for d in /sys/class/net/*; do
        [ -e "$d/device" ] || continue
        [ "$(cat "$d/type" 2>/dev/null)" = 1 ] || continue
        echo "${d##*/}"
    done | sort -V
}

# One "ADDR/PREFIX,PEER" per line.
entries=$(echo "$net" | tr ';' '\n' | grep .)
n_want=$(echo "$entries" | grep -c .)

end=$(($(uptime_s) + 5))
ifaces=$(list_eth)
while [ "$(echo "$ifaces" | grep -c .)" -lt "$n_want" ] && [ "$(uptime_s)" -lt "$end" ]; do
    sleep 0.2
    ifaces=$(list_eth)
done

# Configure every interface first so links and bridges settle in parallel.
i=0
while IFS=, read -r addr peer; do
    [ -n "$addr" ] || continue
    i=$((i + 1))
    ifname=$(echo "$ifaces" | sed -n "${i}p")
    [ -n "$ifname" ] || continue
    ip addr add "$addr" dev "$ifname" && ip link set "$ifname" up ||
        echo "QIH-WARN cannot configure $ifname with $addr"
done <<EOF
$entries
EOF

i=0
while IFS=, read -r addr peer; do
    [ -n "$addr" ] || continue
    i=$((i + 1))
    ifname=$(echo "$ifaces" | sed -n "${i}p")
    [ -n "$ifname" ] || ifname=none
    result=FAIL
    if [ "$ifname" != none ] && [ -n "$peer" ]; then
        end=$(($(uptime_s) + wait_s))
        while :; do
            if ping -c 1 -W 2 -s "$size" -I "$ifname" "$peer" >/dev/null 2>&1; then
                result=OK
                break
            fi
            [ "$(uptime_s)" -lt "$end" ] || break
            sleep 1
        done
    fi
    echo "QIH-PING $ifname ${peer:-none} $result"
done <<EOF
$entries
EOF

if [ -n "$watch" ]; then
    peer=${watch%%,*}
    count=${watch#*,}
    case $count in '' | *[!0-9]*) count=50 ;; esac
    ping -c "$count" -i 0.2 -W 1 "$peer" 2>&1 | sed -n \
        -e 's/.*\(seq=[0-9]*\).*/QIH-WATCH \1/p' \
        -e 's/^\([0-9]*\) packets transmitted, \([0-9]*\) packets received.*/QIH-WATCHED \1 \2/p'
fi

echo "QIH-DONE"
if [ "$stay" = 1 ]; then
    echo "QIH-STAY"
    while :; do sleep 60; done
fi
sync
poweroff -f
# Only reached if poweroff fails; exiting would panic the kernel.
while :; do sleep 60; done
