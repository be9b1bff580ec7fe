#!/usr/bin/env bash
# Installs the Debian packages redeem-kiosk needs for development, the demo and the
# tests, but only those that are missing. Uses apt-get as root, or through sudo.
# Usage: scripts/system-deps.sh [extra-package ...]
set -euo pipefail

packages=(
  python3 python3-venv python3-dev gcc make git openssl
  libzbar0                      # pyzbar's decoder library
  mosquitto                     # real MQTT broker for the sync tests
  postgresql                    # throwaway clusters for HQ's tests (initdb/pg_ctl, never a shared server)
  chromium chromium-driver      # the HQ dashboard driven in a real browser (Selenium)
  xvfb xauth                    # virtual display for the Kivy tests and screenshots
  xdotool                       # UI scenario tests: taps and a USB scanner typed from outside
  libgl1 libegl1 libgles2 libgl1-mesa-dri   # OpenGL for Kivy's SDL2 window
  libmtdev1 libsdl2-2.0-0       # input + SDL runtime Kivy loads
  libusb-1.0-0                  # python-escpos USB printers
  fonts-dejavu-core
  mmdebstrap systemd shellcheck fdisk e2fsprogs  # appliance: CI image build, unit verify, lint
  # the virtual Pi (make vpi-test): arm64 root under qemu-user, booted by qemu-system
  qemu-system-arm qemu-user-static binfmt-support arch-test dosfstools mtools socat
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
((${#missing[@]})) || exit 0

echo "system-deps: installing missing Debian packages: ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "system-deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian starts mosquitto as a system service on install; the tests run their own
# brokers on free ports and do not need it.
