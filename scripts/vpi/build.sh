#!/usr/bin/env bash
# Builds (or reuses) the virtual Raspberry Pi's disk image, kernel and initramfs.
#
# Usage: sudo scripts/vpi/build.sh    -> prints the cache folder holding
#        kiosk.img (boot vfat, root ext4, data ext4), vmlinuz, initrd.img
#
# What it builds is the real kiosk image made the real way, on Debian bookworm arm64
# instead of Raspberry Pi OS: mmdebstrap --arch=arm64 makes a root with Debian's arm64
# kernel, it is packed into a disk image laid out like Raspberry Pi OS Lite (FAT boot
# partition with config.txt/cmdline.txt, ext4 root, fixed disk id), and
# image-build/build-image.sh turns that into a kiosk image exactly as it does for a
# Pi (grow root, data partition, customize.sh, firmware fragments). Only the virtual
# Pi's test agent (scripts/vpi/overlay: a root command channel on a virtio-serial
# port and DHCP through systemd-networkd) is added to the base root; it is never in
# a shipped image.
#
# The result is cached outside the clone, keyed by a hash of every input (the
# source files that end up in the image, this script, the overlay, the mirror):
# VPI_CACHE (default /var/cache/redeem-kiosk-vpi)/<hash>/. The initramfs holds only
# virtio_pci virtio_blk virtio_net ext4 (MODULES=list, set before the kernel is
# installed), because building a full one under emulation takes ~25 minutes.
set -euo pipefail

HERE=$(dirname "$(realpath "$0")")
REPO=$(realpath "$HERE/../..")
CACHE=${VPI_CACHE:-/var/cache/redeem-kiosk-vpi}
MIRROR=${VPI_MIRROR:-http://deb.debian.org/debian}
DISK_ID=4e639091   # Raspberry Pi OS images share one disk id too (defect 7 of issue 12)
SECTOR=512 BOOT_START=8192 BOOT_SECTORS=131072 ROOT_START=139264

die() { echo "vpi-build: $*" >&2; exit 1; }
log() { echo "vpi-build: $*" >&2; }
[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap, loop devices, chroot)"

inputs() {  # every file whose content goes into the image, in a stable order
  cd "$REPO"
  # (scripts/vpi/*.py run on the host or are pushed into the guest at run time)
  git ls-files -co --exclude-standard -- "$@" | grep -v -e '^scripts/vpi/[^/]*\.py$' \
    -e '__pycache__' | LC_ALL=C sort | while read -r f; do
      [[ -f $f ]] && printf '%s\0' "$f"
    done
}
hash_of() { { echo "$MIRROR"; inputs "$@" | xargs -0 sha256sum; } | sha256sum | cut -c1-16; }
# Two stages, each cached: the Debian base (slow under emulation, changes rarely) and
# the kiosk image made from it (changes with every source change).
BASE_KEY=$(hash_of scripts/vpi/base.sh scripts/vpi/overlay)
KEY=$(hash_of image-build systemd firmware kiosk sync pyproject.toml scripts/vpi)-$BASE_KEY
OUT=$CACHE/$KEY
BASE_DIR=$CACHE/base-$BASE_KEY
# Old images are pruned: the newest VPI_KEEP (default 3) kiosk images stay, with the
# bases they were made from, and work folders a killed build left (older than a day).
prune() {
  local keep=${VPI_KEEP:-3} d name n=0 bases=" base-$BASE_KEY "
  while read -r d; do
    name=$(basename "$d")
    [[ $name =~ ^[0-9a-f]{16}-([0-9a-f]{16})$ ]] || continue
    if (( n < keep )) || [[ $d == "$OUT" ]]; then
      n=$((n + 1)); bases+="base-${BASH_REMATCH[1]} "
    else
      log "pruning old image $d"; rm -rf "$d"
    fi
  done < <(find "$CACHE" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn | cut -d' ' -f2-)
  for d in "$CACHE"/base-*; do
    [[ -d $d && $bases != *" $(basename "$d") "* ]] || continue
    log "pruning old base $d"; rm -rf "$d"
  done
  find "$CACHE" -maxdepth 1 -name 'work.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
}
if [[ -f $OUT/done ]]; then
  log "reusing $OUT"
  touch "$OUT"  # newest for prune
  prune
  echo "$OUT"
  exit 0
fi

# binfmt for the arm64 programs of the root (qemu-user-static registers it).
if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
arch-test arm64 >/dev/null || die "cannot run arm64 programs: install qemu-user-static binfmt-support"

mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

if [[ ! -f $BASE_DIR/done ]]; then
  bash "$HERE/base.sh" "$BASE_DIR" "$MIRROR" "$DISK_ID" "$WORK/base"
else
  log "reusing the base root $BASE_DIR"
fi

mkdir -p "$WORK/out"
cp "$BASE_DIR/vmlinuz" "$BASE_DIR/initrd.img" "$WORK/out/"

# A Raspberry Pi OS Lite-like disk: FAT boot (stock-like config.txt, cmdline.txt), ext4 root.
ROOT=$BASE_DIR/root
mkdir -p "$ROOT/boot/firmware" "$WORK/bootfs"
printf '[all]\ndtoverlay=vc4-kms-v3d\n' > "$WORK/bootfs/config.txt"
printf 'console=serial0,115200 console=tty1 root=PARTUUID=%s-02 rootfstype=ext4 fsck.repair=yes rootwait init=/usr/lib/raspberrypi-sys-mods/firstboot\n' \
  "$DISK_ID" > "$WORK/bootfs/cmdline.txt"
root_mb=$(( $(du -sm "$ROOT" | cut -f1) * 12 / 10 + 64 ))
total=$(( ROOT_START + root_mb * 2048 ))
BASE=$WORK/raspios-like.img
truncate -s $(( total * SECTOR )) "$BASE"
printf 'label: dos\nlabel-id: 0x%s\nstart=%s,size=%s,type=c\nstart=%s,type=83\n' \
  "$DISK_ID" "$BOOT_START" "$BOOT_SECTORS" "$ROOT_START" | sfdisk -q "$BASE"
mkfs.fat -F 32 -s 1 -n BOOTFS -C "$WORK/bootfs.img" $(( BOOT_SECTORS / 2 )) >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -i "$WORK/bootfs.img" "$WORK/bootfs/config.txt" "$WORK/bootfs/cmdline.txt" ::/
dd if="$WORK/bootfs.img" of="$BASE" bs=512 seek="$BOOT_START" conv=notrunc,sparse status=none
mkfs.ext4 -q -L rootfs -d "$ROOT" -E offset=$(( ROOT_START * SECTOR )) "$BASE" "$(( root_mb * 1024 ))k"

# The maintenance login (KIOSK_SSH_KEY) with a key made for this image; the run logs
# in with maint-key over a hostfwd port.
ssh-keygen -q -t ed25519 -N '' -C vpi-maint -f "$WORK/out/maint-key"
log "image-build/build-image.sh: the kiosk customisation (pip under emulation: several minutes)"
ROOT_GROW_MB=${VPI_ROOT_GROW_MB:-1024} DATA_MB=${VPI_DATA_MB:-640} \
  KIOSK_SSH_KEY="$WORK/out/maint-key.pub" \
  bash "$REPO/image-build/build-image.sh" "$BASE" "$WORK/out/kiosk.img" "$REPO" >&2
rm -f "$BASE" "$WORK/bootfs.img"

rm -rf "$OUT"
mv "$WORK/out" "$OUT"
echo "built in $((SECONDS - START)) s from $MIRROR" > "$OUT/done"
prune
log "built $OUT in $((SECONDS - START)) s"
echo "$OUT"
