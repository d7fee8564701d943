#!/bin/sh
# PID 1 of the lab's VM guest: mount what Docker needs, load the PPP and PPTP modules,
# bring up the user-mode network, run dockerd. "poweroff" on the virtio control port (what
# `pptp-lab vm down` sends) or SIGTERM stops dockerd, syncs and powers off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
# The initramfs may have moved /proc, /sys and /dev here already.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
# What udev would add: bullseye's runc (1.0.0-rc93) cannot start a container without /dev/fd.
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -o remount,rw /
mkdir -p /var/run/pptp
hostname pptp-lab-vm

up() { cut -d' ' -f1 /proc/uptime; }
# The static keys below are flipped on with the second vCPU offline: a text patch with one
# CPU running has no other vCPU to run a stale translation of it (see the keys below).
cpu1=/sys/devices/system/cpu/cpu1/online
[ -w "$cpu1" ] && echo 0 > "$cpu1"
# The first memory cgroup turns memcg kmem accounting on for good (a key in every slab
# allocation): a cold boot whose first container did so with both vCPUs running hung (RCU
# stall and soft lockup, both vCPUs at a 5-byte NOP of a static branch).
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
mkdir -p /sys/fs/cgroup/pptp-lab-keys
# One modprobe per group: each process start is slow under TCG. What dockerd and the
# network need first; the PPP/PPTP modules load while dockerd starts.
modprobe -a virtio_net virtio_console overlay bridge br_netfilter veth ip_tables iptable_nat \
    iptable_filter iptable_raw iptable_mangle nf_tables nft_ct nft_nat nft_masq xt_CT \
    xt_TCPMSS || echo "lab-init: some base modules failed to load"
sysctl -qw net.ipv4.ip_forward=1
# No address-space randomisation in this throwaway guest: QEMU 7.2's TCG keys its translated
# code by virtual address, so with ASLR every new process (each exec, each container start,
# dockerd's network hook) translated its binaries afresh. Off, a lab costs half the CPU
# (measured: `pptp-lab test` of the default topology 71 -> 36 s of QEMU CPU, 50 -> 28 s).
sysctl -qw kernel.randomize_va_space=0
# Docker networks created by the lab are bridged; let their frames skip the host's filters.
sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null

# QEMU user networking (restricted: the guest reaches nothing outside this machine).
ip link set lo up
nic=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
ip link set "$nic" up
ip addr add 10.0.2.15/24 dev "$nic"
ip route add default via 10.0.2.2

# crun, not runc, starts the containers and their execs: under TCG an exec costs the guest
# 0.27 s of CPU with crun, 0.50 s with runc (which copies its own binary on every one).
# lab-runtime is crun with Docker's network hook made cheap (0.6 s less per container start).
dockerd -H unix:///var/run/docker.sock -H tcp://0.0.0.0:2375 --tls=false \
        --add-runtime crun=/usr/local/sbin/lab-runtime --default-runtime crun \
        --storage-driver overlay2 --log-level warn >/var/log/dockerd.log 2>&1 &
dpid=$!
echo "lab-init: dockerd started at $(up)s"
# The kernel patches its own code when a static key flips (text_poke: int3, then an IPI to
# every CPU). Under QEMU's multi-threaded TCG a vCPU can run the old translation of patched
# code: an "Oops: int3" panic and soft lockups were seen. A lab flipped keys ~10 times per
# `pptp-lab test` (traced with a kprobe on arch_jump_label_transform_apply): netfilter hooks
# registered by a node's nft chains, nftrace set by `why`, cgroup BPF device filters
# (crun's, when the guest goes from 0 containers to 1 and back), and netstamp (ping). Each is
# held on here for the guest's life, so a lab flips none of them:
# - netstamp: a socket asking for receive timestamps (AF_INET, SOCK_DGRAM; SO_TIMESTAMP);
perl -e 'socket(S, 2, 2, 0) or die "socket: $!"; setsockopt(S, 1, 29, pack("i", 1)) or die "SO_TIMESTAMP: $!"; sleep' &
# - every IPv4 and IPv6 hook (an inet base chain on each, empty, policy accept) and nftrace;
nft -f - <<'KEYS' || echo "lab-init: could not hold the netfilter static keys"
table inet pptp_lab_keys {
    chain hold_prerouting { type filter hook prerouting priority 0; }
    chain hold_input { type filter hook input priority 0; }
    chain hold_forward { type filter hook forward priority 0; }
    chain hold_output { type filter hook output priority 0; }
    chain hold_postrouting { type filter hook postrouting priority 0; }
    chain hold_nftrace { meta nftrace set 1; }
}
KEYS
# - cgroup BPF device filters: one container that sleeps for the guest's life (an empty
#   image with the guest's own /usr bound read-only; no network).
(
    i=0
    until docker info >/dev/null 2>&1 || [ $i -ge 300 ]; do sleep 1; i=$((i+1)); done
    docker rm -f pptp-lab-keyholder >/dev/null 2>&1  # a cold boot on a kept overlay has the last one
    tar -cf - -T /dev/null | docker import - pptp-lab/keyholder >/dev/null \
        && docker run -d --name pptp-lab-keyholder --network none --log-driver none \
               -v /usr:/usr:ro -v /lib:/lib:ro -v /lib64:/lib64:ro --entrypoint /usr/bin/sleep \
               pptp-lab/keyholder infinity >/dev/null \
        && echo "lab-init: keyholder container running at $(up)s" \
        || echo "lab-init: keyholder container failed"
    [ -w "$cpu1" ] && echo 1 > "$cpu1" && echo "lab-init: second vCPU online at $(up)s"
) &
# Show the stack of a soft lockup or stall on the console (warning level and up), on every CPU.
sysctl -qw kernel.printk="5 4 1 5" kernel.softlockup_all_cpu_backtrace=1

modprobe -a ppp_generic ppp_async ppp_mppe ppp_deflate bsd_comp nf_conntrack_pptp nf_nat_pptp \
    sch_netem tun || echo "lab-init: some PPP/PPTP modules failed to load"
[ -e /dev/ppp ] || mknod /dev/ppp c 108 0
echo "lab-init: PPP and PPTP modules loaded at $(up)s"

stop() {
    echo "lab-init: stopping"
    kill -TERM "$dpid" 2>/dev/null
    wait "$dpid"
    sync
    mount -o remount,ro /
    echo "lab-init: powering off"
    echo 1 > /proc/sys/kernel/sysrq
    echo o > /proc/sysrq-trigger
    sleep 5
    exit 0  # init exiting panics the kernel; QEMU runs with -no-reboot and exits
}
trap stop TERM INT USR1

# `pptp-lab vm down` writes "poweroff" to the virtio control port named lab.ctl (found in
# sysfs: without udev there is no /dev/virtio-ports/ link). The port stays open, or QEMU
# drops what the host writes; reads return at once while no host is connected, hence the sleep.
ctl=""
for port in /sys/class/virtio-ports/*; do
    [ "$(cat "$port/name" 2>/dev/null)" = lab.ctl ] && ctl=/dev/$(basename "$port")
done
echo "lab-init: control port ${ctl:-missing}"
[ -n "$ctl" ] && (exec 3<"$ctl"; while :; do
    if read -r cmd <&3; then [ "$cmd" = poweroff ] && kill -TERM 1; else sleep 1; fi
done) &
echo "lab-init: ready at $(up)s"
while :; do
    sleep 3600 &
    wait $!
done
