#!/usr/bin/env bash
# Turns an official Raspberry Pi OS Lite (bookworm, arm64) image into a kiosk image.
#
# Usage: sudo image-build/build-image.sh INPUT.img[.xz] OUTPUT.img [PROJECT_SRC]
#
# 1. copies (or unpacks) INPUT to OUTPUT; INPUT is never changed;
# 2. grows the root partition by ROOT_GROW_MB (packages, venv) and appends an ext4
#    data partition (label kiosk-data, DATA_MB) for /var/lib/kiosk, journalled with
#    data=journal (power-loss design: docs/appliance.md);
# 3. attaches the partitions as loop devices by offset (no partition device nodes
#    or udev needed, so it also works in containers) and mounts root and boot;
# 4. runs image-build/customize.sh in the mounted root (through qemu-user-static's
#    binfmt handler when the build host is not arm64);
# 5. unmounts and detaches everything, also on failure.
#
# Build host: Debian/Ubuntu with fdisk (sfdisk), e2fsprogs, dosfstools, xz-utils (mtools
# when the kernel cannot mount vfat) and,
# on x86, qemu-user-static + binfmt-support. Environment: ROOT_GROW_MB (default
# 2048), DATA_MB (default 1024), and the KIOSK_* options of customize.sh.
set -euo pipefail

die() { echo "build-image: $*" >&2; exit 1; }
log() { echo "build-image: $*"; }

[[ $# -ge 2 && $# -le 3 ]] || die "usage: $0 INPUT.img[.xz] OUTPUT.img [PROJECT_SRC]"
[[ $(id -u) -eq 0 ]] || die "must run as root (loop devices, mount, chroot)"
INPUT=$1
OUTPUT=$2
HERE=$(dirname "$(realpath "$0")")
SRC=$(realpath "${3:-$HERE/..}")
ROOT_GROW_MB=${ROOT_GROW_MB:-2048}
DATA_MB=${DATA_MB:-1024}
DATA_LABEL=kiosk-data
SECTOR=512
MIB=2048  # sectors per MiB

for tool in sfdisk losetup e2fsck resize2fs mkfs.ext4 tune2fs mount chroot; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install fdisk e2fsprogs mount)"
done
[[ -f $INPUT ]] || die "$INPUT does not exist"
[[ ! -e $OUTPUT ]] || die "$OUTPUT exists; refusing to overwrite it"

LOOPS=()
root_dev="" data_dev="" boot_dev=""
MNT=""
cleanup() {
  set +e
  if [[ -n $MNT ]]; then
    sync
    umount -R "$MNT" 2>/dev/null || umount -lR "$MNT"
    rmdir "$MNT"
  fi
  local l
  for l in "${LOOPS[@]}"; do losetup -d "$l"; done
}
trap cleanup EXIT

attach() {  # attach VAR START_SECTOR SIZE_SECTORS: a loop device for that range in VAR
  local dev
  dev=$(losetup --show -f -o $(( $2 * SECTOR )) --sizelimit $(( $3 * SECTOR )) "$OUTPUT")
  LOOPS+=("$dev")  # not in a subshell, so cleanup sees it
  printf -v "$1" '%s' "$dev"
}

part_field() {  # part_field N start|size -> that value from sfdisk's dump
  sfdisk -d "$OUTPUT" | grep -E "^[^ ]*[^0-9]$1 : " | sed -E "s/.*[ ,]$2= *([0-9]+).*/\1/"
}

log "copying $INPUT to $OUTPUT"
case $INPUT in
  *.xz) xz -dc "$INPUT" > "$OUTPUT" ;;
  *) cp --sparse=always "$INPUT" "$OUTPUT" ;;
esac

count=$(sfdisk -d "$OUTPUT" | grep -c ' : start=')
[[ $count -eq 2 ]] || die "$INPUT has $count partitions; expected Raspberry Pi OS's two (boot, root)"
boot_start=$(part_field 1 start); boot_size=$(part_field 1 size)
root_start=$(part_field 2 start); root_size=$(part_field 2 size)

log "growing root by ${ROOT_GROW_MB} MiB and adding a ${DATA_MB} MiB data partition"
root_size=$(( (root_size + ROOT_GROW_MB * MIB + MIB - 1) / MIB * MIB ))
data_start=$(( (root_start + root_size + MIB - 1) / MIB * MIB ))
truncate -s $(( (data_start + DATA_MB * MIB) * SECTOR )) "$OUTPUT"
echo "$root_start,$root_size" | sfdisk -q --no-reread --no-tell-kernel -N 2 "$OUTPUT"
echo "$data_start,$(( DATA_MB * MIB )),L" | sfdisk -q --no-reread --no-tell-kernel --append "$OUTPUT"

attach root_dev "$root_start" "$root_size"
e2fsck -fy "$root_dev" >/dev/null || [[ $? -le 1 ]] || die "root filesystem check failed"
resize2fs "$root_dev" >/dev/null
attach data_dev "$data_start" $(( DATA_MB * MIB ))
mkfs.ext4 -q -L "$DATA_LABEL" "$data_dev"
tune2fs -o journal_data "$data_dev" >/dev/null  # data=journal by default, fstab says so too
attach boot_dev "$boot_start" "$boot_size"

MNT=$(mktemp -d /tmp/kiosk-image.XXXXXX)
mount "$root_dev" "$MNT"
boot_dir=boot/firmware
[[ -d $MNT/$boot_dir ]] || boot_dir=boot
BOOT_MTOOLS=""
if ! mount "$boot_dev" "$MNT/$boot_dir" 2>/dev/null; then
  # Containers and some CI kernels have no vfat: edit the FAT partition with mtools.
  command -v mcopy >/dev/null || die "cannot mount the boot partition (no vfat?) and mtools is missing"
  log "this kernel cannot mount the boot partition: editing it with mtools instead"
  BOOT_MTOOLS=yes
  export MTOOLS_SKIP_CHECK=1
  mcopy -s -n -i "$boot_dev" '::/*' "$MNT/$boot_dir/"
fi

if ! chroot "$MNT" /bin/true 2>/dev/null; then
  die "cannot run the image's programs: on a non-arm64 host install qemu-user-static and binfmt-support"
fi

disk_id=$(sfdisk --disk-id "$OUTPUT" | sed 's/^0x//')
KIOSK_DATA_LABEL=$DATA_LABEL KIOSK_DATA_PARTUUID=$disk_id-03 KIOSK_BOOT_DIR=$boot_dir \
  bash "$HERE/customize.sh" "$MNT" "$SRC"

# The data partition's top folder belongs to the kiosk user (systemd's StateDirectory=
# would also fix this at first start; doing it here keeps the first boot simple).
mount "$data_dev" "$MNT/var/lib/kiosk"
chown "$(chroot "$MNT" id -u kiosk):$(chroot "$MNT" id -g kiosk)" "$MNT/var/lib/kiosk"
chmod 750 "$MNT/var/lib/kiosk"
# the persistent journal's folder (bind-mounted on /var/log/journal, see customize.sh)
install -d -m 2755 -g "$(chroot "$MNT" getent group systemd-journal | cut -d: -f3)" \
  "$MNT/var/lib/kiosk/journal"
umount "$MNT/var/lib/kiosk"

# Raspberry Pi OS grows the root partition on first boot, which needs root to be the
# last partition. Ours is sized at build time and the data partition follows it.
sed -i 's# init=/usr/lib/raspberrypi-sys-mods/firstboot##; s# init=/usr/lib/raspi-config/init_resize.sh##' \
  "$MNT/$boot_dir/cmdline.txt"

if [[ -n $BOOT_MTOOLS ]]; then  # write the edited boot files back, leave the mount point empty
  mcopy -s -o -i "$boot_dev" "$MNT/$boot_dir"/* ::/
  find "$MNT/$boot_dir" -mindepth 1 -delete
fi

log "done: $OUTPUT (flash it with Raspberry Pi Imager or dd; see docs/technician.md)"
