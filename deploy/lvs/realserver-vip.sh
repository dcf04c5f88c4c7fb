#!/bin/sh
# The real-server side of LVS-DR, run on every Turnpike node: the VIP on the loopback interface
# (so the node accepts packets addressed to it) without the node ever answering ARP for it (the
# director must be the only one that does, or clients reach a node directly).
#
#   realserver-vip.sh up   192.0.2.10     # at boot, before turnpike starts (see docs/deploy.md)
#   realserver-vip.sh down 192.0.2.10
#
# arp_ignore=1: answer ARP only for addresses configured on the interface the request came in on
# (the VIP is on lo, so never). arp_announce=2: always use the outgoing interface's own address as
# the ARP source, never the VIP. Both on "all" and on each interface (the kernel takes the max).
set -eu

action=${1:-}
vip=${2:-}
if [ -z "$action" ] || [ -z "$vip" ]; then
    echo "usage: $0 up|down VIP" >&2
    exit 2
fi

arp() {
    for dir in /proc/sys/net/ipv4/conf/*/; do
        name=$(basename "$dir")
        [ "$name" = "lo" ] && continue
        echo "$1" > "$dir/arp_ignore"
        echo "$2" > "$dir/arp_announce"
    done
}

case "$action" in
    up)
        arp 1 2
        ip addr replace "$vip/32" dev lo label lo:vip
        ;;
    down)
        ip addr del "$vip/32" dev lo 2>/dev/null || true
        arp 0 0
        ;;
    *)
        echo "usage: $0 up|down VIP" >&2
        exit 2
        ;;
esac
