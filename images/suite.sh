#!/bin/sh
# Build a lab root filesystem from another Debian suite than bookworm:
#   suite.sh SUITE KIND DEST MIRROR
#   SUITE  bullseye | trixie, or bookworm-backports (bookworm with the kernel from
#          bookworm-backports: for the VM guest disk)
#   KIND, DEST, MIRROR as for rootfs.sh
# rootfs.sh does the work: it is sourced here with its debootstrap call redirected to SUITE.
# rootfs.sh itself still names bookworm and is left as it is, because its bytes are part of
# the keys of bookworm's cached disks and images.
set -eu
suite=$1
shift
case $suite in
    bullseye|trixie) release=$suite backports="" ;;
    bookworm-backports) release=bookworm backports=$suite ;;
    *) echo "suite.sh: unknown suite $suite (bullseye, trixie or bookworm-backports)" >&2; exit 2 ;;
esac

# Replaces the command for rootfs.sh, which calls:
#   debootstrap --variant=minbase --include=PKGS bookworm DEST MIRROR
debootstrap() {
    if [ "$#" -ne 5 ] || [ "$3" != bookworm ]; then
        echo "suite.sh: rootfs.sh's debootstrap call changed ($*): update suite.sh" >&2
        exit 2
    fi
    include=${2#--include=}
    if [ -n "$backports" ]; then
        # The kernel comes from backports below; bookworm's would be a second one to strip.
        include=$(echo "$include" | tr , '\n' | grep -vx linux-image-amd64 | paste -sd, -)
    fi
    command debootstrap "$1" "--include=$include" "$release" "$4" "$5"
    [ -n "$backports" ] || return 0
    root=$4
    echo "deb $5 $backports main" > "$root/etc/apt/sources.list.d/$backports.list"
    # The kernel's postinst builds the initrd (initramfs-tools), which wants /proc.
    mount -t proc proc "$root/proc"
    trap 'umount "$root/proc" 2>/dev/null || true' EXIT
    chroot "$root" apt-get update
    chroot "$root" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends -t "$backports" linux-image-amd64
    umount "$root/proc"
    trap - EXIT
}

. "$(dirname "$0")/rootfs.sh"
