#!/bin/sh
# Build a Debian bookworm root filesystem for one of the lab's images, offline from
# Debian's packages only: rootfs.sh KIND DEST MIRROR
#   KIND   node | vm  (the package list is images/KIND/packages.txt, extra steps images/KIND/post.sh)
#   DEST   empty directory to fill
#   MIRROR Debian mirror URL (the host's, from /etc/apt/sources.list*)
set -eu
kind=$1 dest=$2 mirror=$3
here=$(cd "$(dirname "$0")" && pwd)
pkgs=$(grep -v '^#' "$here/$kind/packages.txt" | grep . | paste -sd, -)

debootstrap --variant=minbase --include="$pkgs" bookworm "$dest" "$mirror"

# Documentation, manuals, translations and package lists are dead weight in a lab image.
rm -rf "$dest"/var/lib/apt/lists/* "$dest"/var/cache/apt/*.bin "$dest"/var/cache/apt/archives/*.deb \
       "$dest"/usr/share/doc/* "$dest"/usr/share/man/* "$dest"/usr/share/info/* \
       "$dest"/usr/share/locale/* "$dest"/var/log/*.log "$dest"/var/cache/debconf/*-old
# pppd and pptpd need these to exist (empty) in the image.
mkdir -p "$dest/run" "$dest/tmp" "$dest/var/run"
chmod 1777 "$dest/tmp"

if [ -x "$here/$kind/post.sh" ]; then
    "$here/$kind/post.sh" "$dest"
fi
