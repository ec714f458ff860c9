#!/usr/bin/env bash
# Installs every package stowage's tests and benchmarks use (Debian 12, as root).
# Idempotent: does nothing when all are present.
set -euo pipefail
pkgs=(podman skopeo buildah docker-registry uidmap dbus dbus-user-session systemd-container
      debootstrap fuse-overlayfs gnupg curl jq quota e2fsprogs crun catatonit golang-github-containers-common
      polkitd desktop-file-utils systemd util-linux time bc runc busybox-static prometheus prometheus-node-exporter
      qemu-system-x86 xvfb dunst x11-apps fonts-dejavu-core adwaita-icon-theme imagemagick xdg-utils file)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${missing[*]}; run as root: sudo $0" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "deps: ok (${#pkgs[@]} packages)"
