#!/usr/bin/env bash
# System libraries for headless rendering (MuJoCo via EGL/OSMesa). Best effort: skipped without root/apt.
set -u
need=()
for pkg in libegl1 libgl1 libosmesa6; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: missing ${need[*]} (headless video); install them with your package manager" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null \
  || echo "note: could not install ${need[*]}; video rendering will be unavailable" >&2
exit 0
