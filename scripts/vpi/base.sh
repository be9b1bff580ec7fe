#!/usr/bin/env bash
# The virtual Pi's Debian base (stage 1 of scripts/vpi/build.sh, cached on its own):
# a Debian bookworm arm64 root with Debian's arm64 kernel, made by mmdebstrap under
# qemu-user, plus the test agent overlay; kernel and initramfs copied beside it.
# The initramfs holds only virtio_pci virtio_blk virtio_net ext4 (MODULES=list, set
# before the kernel is installed): a full one takes ~25 minutes under emulation. And
# it is made once: during the install update_initramfs=no turns the initramfs-tools
# trigger's second run (`update-initramfs -u` after the kernel's own `-c`) into a
# no-op; a customize hook puts the package's update-initramfs.conf back.
#
# Usage: scripts/vpi/base.sh OUT_DIR MIRROR DISK_ID WORK_DIR
set -euo pipefail
OUT=$1 MIRROR=$2 DISK_ID=$3 WORK=$4
HERE=$(dirname "$(realpath "$0")")
START=$SECONDS
log() { echo "vpi-base: $*" >&2; }
ROOT=$WORK/root
mkdir -p "$WORK"
log "mmdebstrap: Debian bookworm arm64 with its kernel (10-20 minutes under emulation)"
# shellcheck disable=SC2016  # the hooks expand $1 inside mmdebstrap, not here
mmdebstrap --arch=arm64 --variant=minbase --mode=root --dpkgopt=force-confold \
  --include=linux-image-arm64,initramfs-tools,systemd-sysv,udev,kmod,e2fsprogs,dosfstools,iproute2,procps,python3,python3-venv \
  --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"
    echo MODULES=list > "$1/etc/initramfs-tools/conf.d/vpi.conf"
    echo COMPRESS=gzip >> "$1/etc/initramfs-tools/conf.d/vpi.conf"
    printf "virtio_pci\nvirtio_blk\nvirtio_net\next4\n" > "$1/etc/initramfs-tools/modules"
    echo update_initramfs=no > "$1/etc/initramfs-tools/update-initramfs.conf"' \
  --customize-hook='conf=$1/etc/initramfs-tools/update-initramfs.conf
    mv "$conf.dpkg-dist" "$conf" 2>/dev/null || echo update_initramfs=yes > "$conf"
    ls "$1"/boot/initrd.img-* >/dev/null 2>&1 || chroot "$1" update-initramfs -c -k all' \
  --customize-hook="tar -C '$HERE/overlay' --owner=0 --group=0 -cf - . | tar -C \"\$1\" -xf -" \
  --customize-hook='systemctl --root="$1" enable vpi-agent.service systemd-networkd.service' \
  --customize-hook="printf 'proc /proc proc defaults 0 0\nPARTUUID=$DISK_ID-01 /boot/firmware vfat defaults 0 2\nPARTUUID=$DISK_ID-02 / ext4 defaults,noatime 0 1\n' > \"\$1/etc/fstab\"" \
  --customize-hook='echo raspberrypi > "$1/etc/hostname"
    printf "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\traspberrypi\n" > "$1/etc/hosts"' \
  bookworm "$ROOT" "$MIRROR" >&2
cp -L "$ROOT"/boot/vmlinuz-* "$WORK/vmlinuz"
cp -L "$ROOT"/boot/initrd.img-* "$WORK/initrd.img"
{ gzip -dc "$WORK/initrd.img" || true; } | grep -aq 'virtio_blk\.ko' \
  || { log "the initramfs has no virtio_blk module"; exit 1; }
rm -f "$ROOT"/boot/vmlinuz-* "$ROOT"/boot/initrd.img-* "$ROOT"/boot/System.map-* "$ROOT"/boot/config-*
rm -rf "$OUT"
mv "$WORK" "$OUT"
echo "built in $((SECONDS - START)) s" > "$OUT/done"
log "base root done after $((SECONDS - START)) s"
