#!/bin/busybox sh
# /init of the test guest built by tools/build-guest.sh.
#
# Kernel parameters:
#   qih.net=ADDR/PREFIX,PEER[,MAC][;ADDR/PREFIX,PEER[,MAC]...]
#       entry i configures the i-th Ethernet interface (eth0, eth1, ...), with the
#       MAC address MAC if given (a guest that changes its own), then pings each
#       PEER (several joined with +) and prints "QIH-PING <ifname> <PEER> OK|FAIL".
#       ADDR/PREFIX "dhcp" asks a DHCP server for the address instead (udhcpc) and
#       prints "QIH-DHCP <ifname> <ADDR>|FAIL".
#   qih.wait=SECONDS   how long to keep retrying each ping (default 20).
#   qih.size=BYTES     ICMP payload of those pings (default 56; 1472 fills a
#                      1500-byte MTU, and the kernel sets DF on it)
#   qih.watch=SECONDS  then keep pinging every peer for that long, printing
#       "QIH-WATCH <ifname> <PEER> OK|FAIL" whenever a result differs from the last
#       one (the tests cut a guest's bridge and see it come back).
#   qih.count=PEER,COUNT
#       after those pings, ping PEER COUNT times, 5 a second, printing each reply
#       ("QIH-COUNT seq=N") and then "QIH-COUNTED <sent> <received>"
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
watch_s=0
size=56
count=""
stay=0
read -r cmdline </proc/cmdline
set -f # cmdline words are not globs
for w in $cmdline; do
    case $w in
        qih.net=*) net=${w#qih.net=} ;;
        qih.wait=*) wait_s=${w#qih.wait=} ;;
        qih.watch=*) watch_s=${w#qih.watch=} ;;
        qih.size=*) size=${w#qih.size=} ;;
        qih.count=*) count=${w#qih.count=} ;;
        qih.stay=*) stay=${w#qih.stay=} ;;
    esac
done
set +f
case $wait_s in '' | *[!0-9]*) wait_s=20 ;; esac
case $watch_s in '' | *[!0-9]*) watch_s=0 ;; esac
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

# udhcpc's hook: take the lease's address.
cat >/tmp/udhcpc.sh <<'EOS'
#!/bin/sh
[ "$1" = bound ] && ip addr add "$ip/$subnet" dev "$interface"
exit 0
EOS
chmod 755 /tmp/udhcpc.sh

# Configure every interface first so links and bridges settle in parallel.
i=0
while IFS=, read -r addr peer mac; do
    [ -n "$addr" ] || continue
    i=$((i + 1))
    ifname=$(echo "$ifaces" | sed -n "${i}p")
    [ -n "$ifname" ] || continue
    [ -z "$mac" ] || ip link set "$ifname" address "$mac" || echo "QIH-WARN cannot set $mac"
    ip link set "$ifname" up || echo "QIH-WARN cannot bring $ifname up"
    if [ "$addr" = dhcp ]; then
        if udhcpc -i "$ifname" -n -q -t 10 -T 2 -s /tmp/udhcpc.sh >/dev/null 2>&1; then
            echo "QIH-DHCP $ifname $(ip -4 -o addr show dev "$ifname" | awk '{print $4}')"
        else
            echo "QIH-DHCP $ifname FAIL"
        fi
    else
        ip addr add "$addr" dev "$ifname" || echo "QIH-WARN cannot configure $ifname with $addr"
    fi
done <<EOF
$entries
EOF

i=0
while IFS=, read -r addr peers mac; do
    [ -n "$addr" ] || continue
    i=$((i + 1))
    ifname=$(echo "$ifaces" | sed -n "${i}p")
    [ -n "$ifname" ] || ifname=none
    for peer in $(echo "${peers:-none}" | tr '+' ' '); do
        result=FAIL
        if [ "$ifname" != none ] && [ "$peer" != none ]; then
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
        echo "QIH-PING $ifname $peer $result"
    done
done <<EOF
$entries
EOF

# Watch: one ping per peer per round; print only changes. The last result of
# interface i is kept in /tmp/watch.i (busybox sh has no arrays).
if [ "$watch_s" -gt 0 ]; then
    mkdir -p /tmp
    end=$(($(uptime_s) + watch_s))
    while [ "$(uptime_s)" -lt "$end" ]; do
        i=0
        while IFS=, read -r addr peer mac; do
            [ -n "$addr" ] || continue
            i=$((i + 1))
            [ -n "$peer" ] || continue
            ifname=$(echo "$ifaces" | sed -n "${i}p")
            [ -n "$ifname" ] || continue
            result=FAIL
            ping -c 1 -W 1 -I "$ifname" "$peer" >/dev/null 2>&1 && result=OK
            last=$(cat "/tmp/watch.$i" 2>/dev/null)
            if [ "$result" != "$last" ]; then
                echo "QIH-WATCH $ifname $peer $result"
                echo "$result" >"/tmp/watch.$i"
            fi
        done <<EOF
$entries
EOF
        sleep 1
    done
fi

# Count: how many of COUNT pings to PEER come back (a guest watching another move).
if [ -n "$count" ]; then
    peer=${count%%,*}
    n=${count#*,}
    case $n in '' | *[!0-9]*) n=50 ;; esac
    ping -c "$n" -i 0.2 -W 1 "$peer" 2>&1 | sed -n \
        -e 's/.*\(seq=[0-9]*\).*/QIH-COUNT \1/p' \
        -e 's/^\([0-9]*\) packets transmitted, \([0-9]*\) packets received.*/QIH-COUNTED \1 \2/p'
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
