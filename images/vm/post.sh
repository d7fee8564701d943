#!/bin/sh
# Finish the VM guest's root filesystem: our init, and only the kernel modules a Docker
# host for the lab needs (the rest would triple the disk for nothing).
set -eu
dest=$1
here=$(cd "$(dirname "$0")" && pwd)
install -m 0755 "$here/init.sh" "$dest/sbin/lab-init"
install -m 0755 "$here/lab-runtime" "$here/lab-setkey" "$dest/usr/local/sbin/"
echo pptp-lab-vm > "$dest/etc/hostname"
printf '127.0.0.1 localhost pptp-lab-vm\n' > "$dest/etc/hosts"
: > "$dest/etc/resolv.conf"

for kdir in "$dest"/lib/modules/*; do
    k=$kdir/kernel
    rm -rf "$k/sound" "$k/drivers/gpu" "$k/drivers/net/wireless" "$k/drivers/media" \
           "$k/drivers/infiniband" "$k/drivers/staging" "$k/drivers/bluetooth" "$k/net/bluetooth" \
           "$k/drivers/iio" "$k/drivers/usb" "$k/drivers/hid" "$k/drivers/input/touchscreen" \
           "$k/drivers/net/ethernet" "$k/drivers/scsi" "$k/drivers/isdn" "$k/drivers/mtd" \
           "$k/net/wireless" "$k/net/mac80211" "$k/fs/ocfs2" "$k/fs/gfs2" "$k/fs/xfs" "$k/fs/btrfs"
    chroot "$dest" depmod -a "$(basename "$kdir")"
done
