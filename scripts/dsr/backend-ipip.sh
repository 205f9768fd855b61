modprobe ipip
modprobe ip6_tunnel
ip link set tunl0 up
ip link set ip6tnl0 up
ip addr add 198.18.100.1/32 dev lo
ip -6 addr add 2001:2:100::1/128 dev lo
sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.tunl0.rp_filter=0
sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
