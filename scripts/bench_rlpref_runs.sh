#!/usr/bin/env bash
# One rlpref run per seed into OUT_DIR/runs/<NAME>-seed<S>/, as a resumable batch: a seed whose
# results.json exists is skipped; a killed run resumes from the stage cache ($RLPREF_CACHE, default
# .rlpref_cache) when rerun. Only results.json, curve.csv, metrics.csv and run.log are kept (no weights).
# Usage: scripts/bench_rlpref_runs.sh OUT_DIR NAME SEEDS [OVERRIDES...]
#   e.g. scripts/bench_rlpref_runs.sh docs/results/imitation_bench HalfCheetah-v4-rlpref-rr-deterministic-c1540 \
#          0-9 loss=rr teacher.near_tie=0        (issue 37, row (a), rlpref's side)
set -euo pipefail
out=${1:?usage: $0 OUT_DIR NAME SEEDS [OVERRIDES...]}
name=${2:?NAME}
seeds=${3:?SEEDS, e.g. 0-9 or 3}
shift 3
lo=${seeds%-*}; hi=${seeds#*-}
for s in $(seq "$lo" "$hi"); do
  dir="$out/runs/$name-seed$s"
  if [ -f "$dir/results.json" ]; then echo "seed $s: done ($dir)"; continue; fi
  tmp="$out/runs/.$name-seed$s.tmp"
  rm -rf "$tmp"
  echo "seed $s: python -m rlpref.run seed=$s $* -> $dir"
  RLPREF_QUIET=1 python -m rlpref.run seed="$s" "$@" hydra.run.dir="$tmp" > /dev/null 2>&1 || { echo "seed $s failed: $tmp/run.log"; exit 1; }
  rm -rf "$tmp/agent" "$tmp/online_reward" "$tmp/.hydra" "$tmp"/*.pt
  mkdir -p "$(dirname "$dir")" && mv "$tmp" "$dir"
done
