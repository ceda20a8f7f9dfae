#!/usr/bin/env bash
# System packages, best effort (skipped without root/apt), one group at a time so one failure does not block the rest:
#   headless rendering (MuJoCo via EGL/OSMesa) | a local SLURM for the cluster-route tests |
#   a C++ compiler (+ Python headers) for the optional rr CPU kernel.
set -u
py=${PYTHON:-python3}
missing() { local out=(); for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || out+=("$pkg"); done; echo "${out[*]}"; }
kernel_pkgs=(g++)
"$py" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  2>/dev/null || kernel_pkgs+=(python3-dev)
groups=("libegl1 libgl1 libosmesa6|headless video" "slurm-wlm munge|the local SLURM tests"
        "${kernel_pkgs[*]}|the rr CPU kernel (rr then runs eagerly)")
can_apt=1
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then can_apt=0; fi
updated=0
for group in "${groups[@]}"; do
  pkgs=$(missing ${group%%|*}); what=${group#*|}
  [ -z "$pkgs" ] && continue
  if [ $can_apt -eq 0 ]; then
    echo "note: missing $pkgs (for $what); install them with your package manager" >&2
    continue
  fi
  [ $updated -eq 1 ] || { apt-get update -qq >/dev/null; updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null \
    || echo "note: could not install $pkgs; $what will be unavailable" >&2
done
exit 0
