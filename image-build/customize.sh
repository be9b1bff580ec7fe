#!/usr/bin/env bash
# Turns a Debian bookworm root filesystem into a redeem-kiosk appliance root.
#
# Usage: image-build/customize.sh ROOTFS [PROJECT_SRC]
#
# ROOTFS is a mounted Raspberry Pi OS Lite (bookworm, arm64) root (build-image.sh
# mounts one) or any Debian bookworm root filesystem (CI builds one with
# mmdebstrap). PROJECT_SRC is the redeem-kiosk source tree (default: this checkout).
# Runs as root on the build host; commands inside ROOTFS run through chroot (with
# qemu-user-static binfmt when ROOTFS is for another architecture).
#
# Optional environment:
#   KIOSK_BOOT_DIR=boot/firmware   boot partition inside ROOTFS (auto-detected)
#   KIOSK_DATA_LABEL=kiosk-data    mount the ext4 partition with this label on
#                                  /var/lib/kiosk (data=journal); build-image.sh sets it
#   KIOSK_DATA_PARTUUID=ID-03      mount it by this PARTUUID instead (build-image.sh)
#   KIOSK_RTC=ds3231               enable the DS3231 RTC overlay
#   KIOSK_HQ_KEYS=DIR              HQ public keys (KEY_ID.pub.pem) the device trusts for
#                                  setup QRs; copied to /etc/kiosk/keys
#   KIOSK_EXTRA_PACKAGES="a b"     more Debian packages (e.g. mosquitto-clients)
#   KIOSK_SSH_KEY=FILE|KEY         an SSH public key (or a file holding one): a maintenance
#                                  user "maint" logs in with it (sudo); password logins
#                                  stay off. Without it the image has no SSH login.
#   KIOSK_BUILD_CA=FILE            CA bundle pip uses during the build only (default:
#                                  $PIP_CERT, for build hosts behind a TLS proxy); it is
#                                  not left in the image
# Every step is explained in docs/appliance.md.
set -euo pipefail

die() { echo "customize: $*" >&2; exit 1; }
log() { echo "customize: $*"; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 ROOTFS [PROJECT_SRC]"
[[ $(id -u) -eq 0 ]] || die "must run as root (chroot, chown)"
ROOT=$(realpath "$1")
HERE=$(dirname "$(realpath "$0")")
SRC=$(realpath "${2:-$HERE/..}")
[[ -f $ROOT/etc/debian_version ]] || die "$ROOT is not a Debian root filesystem"
[[ -f $SRC/pyproject.toml ]] || die "$SRC is not the redeem-kiosk source tree"

VENV=/opt/kiosk/venv
# systemd-journal: doctor's last_boot and `kiosk-hq remote logs` read the journal (found by the
# virtual Pi); audio: the kiosk's sounds open /dev/snd
KIOSK_GROUPS=(video render input gpio lp dialout audio systemd-journal)
PACKAGES=(
  python3 python3-venv python3-numpy ca-certificates
  libzbar0                                  # pyzbar's QR decoder library
  libgl1 libegl1 libgles2 libgbm1 libdrm2   # GL/EGL + KMS/DRM for Kivy's SDL2 (kmsdrm)
  libmtdev1                                 # Kivy multitouch input
  libusb-1.0-0                              # USB receipt printers
  fonts-dejavu-core
  systemd systemd-timesyncd udev            # init, NTP flag the clock trusts, device rules
  fdisk                                     # sfdisk: a card's own disk id at first boot
)
MOUNTED=()
RESOLV_SAVED=""
BUILD_CA=${KIOSK_BUILD_CA:-${PIP_CERT:-}}
BUILD_ENV=()
for v in http_proxy https_proxy no_proxy PIP_DEFAULT_TIMEOUT; do
  if [[ -n ${!v:-} ]]; then BUILD_ENV+=("$v=${!v}"); fi
done

in_root() {
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "${BUILD_ENV[@]}" "$@"
}

mount_bind() {  # mount_bind SRC DEST-inside-root
  mkdir -p "$ROOT$2"
  mount --bind "$1" "$ROOT$2"
  MOUNTED=("$ROOT$2" "${MOUNTED[@]}")
}

cleanup() {
  local m
  for m in "${MOUNTED[@]}"; do umount -l "$m" 2>/dev/null || true; done
  rm -f "$ROOT/usr/sbin/policy-rc.d"
  if [[ -n $RESOLV_SAVED ]]; then
    rm -f "$ROOT/etc/resolv.conf"
    if [[ $RESOLV_SAVED != none ]]; then mv "$RESOLV_SAVED" "$ROOT/etc/resolv.conf"; fi
  fi
  rm -rf "$ROOT/tmp/kiosk-src" "$ROOT/tmp/kiosk-constraints.txt" "$ROOT/tmp/kiosk-build-ca.pem"
}
trap cleanup EXIT

prepare_chroot() {
  mount_bind /proc /proc
  mount_bind /sys /sys
  mount_bind /dev /dev
  mount_bind /dev/pts /dev/pts
  # Name resolution for apt and pip inside the root; the original is put back.
  if [[ -e $ROOT/etc/resolv.conf || -L $ROOT/etc/resolv.conf ]]; then
    RESOLV_SAVED="$ROOT/etc/resolv.conf.kiosk-build"
    mv "$ROOT/etc/resolv.conf" "$RESOLV_SAVED"
  else
    RESOLV_SAVED=none
  fi
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  # Package scripts must not start services inside the build root.
  printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  if [[ -n $BUILD_CA && -f $BUILD_CA ]]; then
    cp "$BUILD_CA" "$ROOT/tmp/kiosk-build-ca.pem"
    BUILD_ENV+=(PIP_CERT=/tmp/kiosk-build-ca.pem)
  fi
}

install_packages() {
  log "installing system packages"
  in_root apt-get update -q
  local extra=() pkg
  # Only in the Raspberry Pi OS archive (archive.raspberrypi.com): picamera2 (CSI
  # camera) and lgpio (gpiozero's pin library, the only one that works on a Pi 5).
  for pkg in python3-picamera2 python3-lgpio; do
    if in_root apt-cache policy "$pkg" | grep -q 'Candidate: [0-9]'; then
      extra+=("$pkg")
    else
      log "$pkg not in this root's apt sources (not Raspberry Pi OS): skipped"
    fi
  done
  read -r -a more <<< "${KIOSK_EXTRA_PACKAGES:-}"
  # the maintenance login (KIOSK_SSH_KEY) needs them; Raspberry Pi OS Lite has both
  [[ -n ${KIOSK_SSH_KEY:-} ]] && more+=(openssh-server sudo)
  in_root apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" "${extra[@]}" "${more[@]}"
}

create_user() {
  local g
  for g in "${KIOSK_GROUPS[@]}"; do
    in_root getent group "$g" >/dev/null || in_root groupadd --system "$g"
  done
  local groups
  groups=$(IFS=,; echo "${KIOSK_GROUPS[*]}")
  if in_root getent passwd kiosk >/dev/null; then
    in_root usermod -a -G "$groups" kiosk
  else
    in_root useradd --system --user-group --groups "$groups" --home-dir /var/lib/kiosk \
      --no-create-home --shell /usr/sbin/nologin --comment "redeem-kiosk" kiosk
  fi
  log "user kiosk in groups: $groups"
}

install_project() {
  log "installing redeem-kiosk into $VENV (with system site packages)"
  mkdir -p "$ROOT/tmp/kiosk-src"
  tar -C "$SRC" --exclude=.git --exclude=.venv --exclude='*.egg-info' --exclude=build \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache \
    --exclude=image-build/rootfs -cf - . | tar -C "$ROOT/tmp/kiosk-src" -xf -
  in_root python3 -m venv --system-site-packages "$VENV"
  # Pin numpy to the apt build: picamera2/simplejpeg are compiled against it, and a pip
  # numpy 2.x in the venv would break `import picamera2` (DESIGN.md section 6). If any
  # dependency demanded another numpy, pip fails here instead of replacing it.
  in_root python3 -c 'import numpy; print("numpy==" + numpy.__version__)' \
    > "$ROOT/tmp/kiosk-constraints.txt"
  # Every kiosk gets the same versions: image-build/constraints.txt (pip-compile of
  # pyproject.toml, `make constraints`) pins every dependency the image installs.
  [[ -f $ROOT/tmp/kiosk-src/image-build/constraints.txt ]] \
    || die "image-build/constraints.txt missing from $SRC (make constraints)"
  in_root "$VENV/bin/pip" install --no-cache-dir -q \
    --constraint /tmp/kiosk-constraints.txt \
    --constraint /tmp/kiosk-src/image-build/constraints.txt /tmp/kiosk-src
  in_root "$VENV/bin/python" -c 'import numpy; assert numpy.__file__.startswith("/usr/lib/python3/"), numpy.__file__'
  # The compiled catalogs (committed .mo files, package data) came along: the kiosk speaks uz, kk, ru.
  in_root "$VENV/bin/python" -c 'from kiosk.i18n import tr; assert tr("Printer ready.", "ru") == "Принтер готов."'
  mkdir -p "$ROOT/opt/kiosk/docs"
  cp "$SRC"/docs/*.md "$ROOT/opt/kiosk/docs/" 2>/dev/null || true
}

place_files() {
  log "placing units, drop-ins, udev rules, config"
  install -m 644 "$SRC"/systemd/*.service "$SRC"/systemd/*.path "$ROOT/etc/systemd/system/"
  install -d "$ROOT/etc/systemd/system.conf.d" "$ROOT/etc/systemd/journald.conf.d"
  install -m 644 "$SRC"/systemd/system.conf.d/*.conf "$ROOT/etc/systemd/system.conf.d/"
  install -m 644 "$SRC"/systemd/journald.conf.d/*.conf "$ROOT/etc/systemd/journald.conf.d/"
  if compgen -G "$SRC/systemd/udev/*.rules" >/dev/null; then
    install -d "$ROOT/etc/udev/rules.d"
    install -m 644 "$SRC"/systemd/udev/*.rules "$ROOT/etc/udev/rules.d/"
  fi
  install -m 755 "$HERE/kiosk-fix-partuuid" "$ROOT/usr/local/sbin/kiosk-fix-partuuid"
  install -d -m 750 -o root -g "$(in_root getent group kiosk | cut -d: -f3)" "$ROOT/etc/kiosk"
  install -m 644 "$HERE/kiosk.toml.example" "$ROOT/etc/kiosk/kiosk.toml.example"
  if [[ -n ${KIOSK_HQ_KEYS:-} ]]; then
    install -d -m 755 "$ROOT/etc/kiosk/keys"
    install -m 644 "$KIOSK_HQ_KEYS"/*.pub.pem "$ROOT/etc/kiosk/keys/"
  fi
  local uid gid
  uid=$(in_root id -u kiosk)
  gid=$(in_root id -g kiosk)
  install -d -m 750 -o "$uid" -g "$gid" "$ROOT/var/lib/kiosk"
}

data_partition() {
  local source
  # By PARTUUID when build-image.sh knows it: kiosk-fix-partuuid makes it unique per
  # card at first boot, while every card has the same label.
  if [[ -n ${KIOSK_DATA_PARTUUID:-} ]]; then
    source=PARTUUID=$KIOSK_DATA_PARTUUID
  elif [[ -n ${KIOSK_DATA_LABEL:-} ]]; then
    source=LABEL=$KIOSK_DATA_LABEL
  else
    return 0
  fi
  log "mounting $source on /var/lib/kiosk (ext4, data=journal)"
  sed -i '/[[:space:]]\/var\/lib\/kiosk[[:space:]]/d' "$ROOT/etc/fstab"
  # nofail: a damaged or missing data partition must not drop the Pi into emergency
  # mode (root locked, no screen); the kiosk boots on and shows the fault. The device
  # wait counts from systemd's start, before udev's coldplug: 90 s (systemd's default)
  # rather than 20 s, which a slow boot exceeded with the partition present (the
  # virtual Pi, ~55 s): it was then not mounted at all that boot.
  printf '%s  /var/lib/kiosk  ext4  defaults,noatime,data=journal,errors=remount-ro,nofail,x-systemd.device-timeout=90s  0  2\n' \
    "$source" >> "$ROOT/etc/fstab"
  # A small persistent journal on the data partition (journald.conf.d bounds it), so
  # "why did it reboot at 14:03" has an answer after a watchdog reset. Without the
  # partition the bind mount fails (nofail) and the journal stays in RAM.
  sed -i '/[[:space:]]\/var\/log\/journal[[:space:]]/d' "$ROOT/etc/fstab"
  printf '%s\n' "/var/lib/kiosk/journal  /var/log/journal  none  bind,nofail,x-systemd.requires-mounts-for=/var/lib/kiosk  0  0" \
    >> "$ROOT/etc/fstab"
  install -d -m 2755 -g systemd-journal "$ROOT/var/log/journal"
}

maintenance_user() {
  if [[ -z ${KIOSK_SSH_KEY:-} ]]; then
    log "no KIOSK_SSH_KEY: no SSH login in this image"
    return 0
  fi
  local key=$KIOSK_SSH_KEY
  [[ -f $key ]] && key=$(head -n 1 "$key")
  [[ $key =~ ^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-)[^[:space:]]*\ [A-Za-z0-9+/=]+ ]] \
    || die "KIOSK_SSH_KEY is not an SSH public key (or a file holding one): ${key:0:40}"
  in_root getent group sudo >/dev/null || in_root groupadd --system sudo
  if ! in_root getent passwd maint >/dev/null; then
    in_root useradd --create-home --shell /bin/bash --groups sudo,systemd-journal,kiosk \
      --comment "kiosk maintenance (SSH key only)" maint
  fi
  in_root passwd --lock maint >/dev/null  # no password: the key is the only way in
  install -d -m 700 "$ROOT/home/maint/.ssh"
  printf '%s\n' "$key" > "$ROOT/home/maint/.ssh/authorized_keys"
  chmod 600 "$ROOT/home/maint/.ssh/authorized_keys"
  in_root chown -R maint:maint /home/maint/.ssh
  install -d -m 750 "$ROOT/etc/sudoers.d"
  printf 'maint ALL=(ALL) NOPASSWD: ALL\n' > "$ROOT/etc/sudoers.d/010-kiosk-maint"
  chmod 440 "$ROOT/etc/sudoers.d/010-kiosk-maint"
  install -d "$ROOT/etc/ssh/sshd_config.d"
  printf '%s\n' "# redeem-kiosk: the maintenance key is the only way in" \
    "PasswordAuthentication no" "KbdInteractiveAuthentication no" "PermitRootLogin no" \
    "AllowUsers maint" > "$ROOT/etc/ssh/sshd_config.d/10-kiosk.conf"
  if [[ -f $ROOT/lib/systemd/system/ssh.service ]]; then
    systemctl --root="$ROOT" enable ssh.service
  else
    log "openssh-server is not in this root: the maintenance user is made, sshd is not"
  fi
  log "maintenance user maint with the given SSH key (sudo, password locked)"
}

boot_dir() {
  if [[ -n ${KIOSK_BOOT_DIR:-} ]]; then echo "$ROOT/$KIOSK_BOOT_DIR"; return; fi
  local d
  for d in boot/firmware boot; do
    if [[ -f $ROOT/$d/config.txt ]]; then echo "$ROOT/$d"; return; fi
  done
}

firmware() {
  local boot
  boot=$(boot_dir)
  if [[ -z $boot || ! -d $boot ]]; then
    log "no Raspberry Pi boot partition in this root: firmware fragments skipped"
    return 0
  fi
  log "firmware fragments into $boot"
  touch "$boot/config.txt" "$boot/cmdline.txt"
  if ! grep -q '^# BEGIN redeem-kiosk' "$boot/config.txt"; then
    sed -n '/^# BEGIN redeem-kiosk/,/^# END redeem-kiosk/p' "$SRC/firmware/config.txt" \
      >> "$boot/config.txt"
  fi
  if [[ ${KIOSK_RTC:-} == ds3231 ]]; then
    sed -i 's/^#dtoverlay=i2c-rtc,ds3231$/dtoverlay=i2c-rtc,ds3231/' "$boot/config.txt"
  fi
  local line token
  line=$(tr -d '\n' < "$boot/cmdline.txt")
  while read -r token; do
    [[ -z $token || $token == \#* ]] && continue
    [[ " $line " == *" $token "* ]] || line="$line $token"
  done < "$SRC/firmware/cmdline.txt"
  printf '%s\n' "${line# }" > "$boot/cmdline.txt"
}

enable_services() {
  log "enabling kiosk services"
  systemctl --root="$ROOT" enable kiosk.service kiosk-sync.service kiosk-sync.path \
    kiosk-firstboot.service kiosk-setup-qr.path kiosk-partuuid.service
  systemctl --root="$ROOT" enable systemd-timesyncd.service 2>/dev/null || true
  # Raspberry Pi OS asks for a user name on the console at first boot unless Imager
  # set one; on a kiosk that dialog would sit behind the UI. Imager's customisation
  # still creates the user (it calls userconf directly, not this service).
  if [[ -f $ROOT/lib/systemd/system/userconfig.service ]]; then
    systemctl --root="$ROOT" mask userconfig.service
  fi
}

clean_root() {
  log "cleaning machine-id, apt lists, logs"
  in_root apt-get clean
  rm -rf "$ROOT"/var/lib/apt/lists/*
  # An empty machine-id makes each device generate its own on first boot.
  : > "$ROOT/etc/machine-id"
  if [[ -f $ROOT/var/lib/dbus/machine-id && ! -L $ROOT/var/lib/dbus/machine-id ]]; then
    rm -f "$ROOT/var/lib/dbus/machine-id"
  fi
  find "$ROOT/var/log" -type f -exec truncate -s 0 {} +
  rm -rf "$ROOT/var/log/journal"/* "$ROOT/root/.cache" "$ROOT/var/cache/debconf"/*-old
  # Raspberry Pi OS regenerates SSH host keys on first boot; never ship shared keys.
  if [[ -f $ROOT/lib/systemd/system/regenerate_ssh_host_keys.service ]]; then
    rm -f "$ROOT"/etc/ssh/ssh_host_*
    systemctl --root="$ROOT" enable regenerate_ssh_host_keys.service 2>/dev/null || true
  fi
}

prepare_chroot
install_packages
create_user
install_project
place_files
data_partition
maintenance_user
firmware
enable_services
clean_root
log "done: $ROOT is a redeem-kiosk root ($(in_root "$VENV/bin/kiosk" --version))"
