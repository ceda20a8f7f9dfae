#!/usr/bin/env bash
# System packages: headless rendering (MuJoCo via EGL/OSMesa), a local SLURM for the cluster-route tests and
# g++ for the optional rr CPU kernel.
# Best effort: skipped without root/apt.
set -u
need=()
for pkg in libegl1 libgl1 libosmesa6 slurm-wlm munge g++; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: missing ${need[*]} (headless video, local SLURM tests); install them with your package manager" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null \
  || echo "note: could not install ${need[*]}; video rendering or the SLURM tests will be unavailable" >&2
exit 0
