#!/usr/bin/env bash
# Control-track acceptance benchmark (issue: control end to end). Runs sequentially, one torch thread:
#   HalfCheetah-v4, default budget, sigma in {0, 0.25} x {bt, rr}, plus the oracle, for each seed.
# Stages are shared through the artefact cache, so bt/rr/oracle reuse one source agent per seed.
# Usage: scripts/bench_control.sh OUT_DIR [SEEDS] [ENV] [BUDGET] [OVERRIDES...]
#   e.g. scripts/bench_control.sh bench/hc 0,1,2                      (default: protocol=online)
#        scripts/bench_control.sh bench/hc_offline 0,1,2 HalfCheetah-v4 default protocol=offline budget.n_feedback=1000
#          (overrides apply to the learned runs only; the oracle has no feedback)
# Then:  python -m rlpref.report OUT_DIR
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [SEEDS] [ENV] [BUDGET]}
seeds=${2:-0}
env_id=${3:-HalfCheetah-v4}
budget=${4:-default}
shift $(( $# < 4 ? $# : 4 ))
export RLPREF_CACHE=${RLPREF_CACHE:-$out/cache}
mkdir -p "$out"
python -m rlpref.run -m env="$env_id" budget="$budget" seed="$seeds" reward=oracle \
  hydra.sweep.dir="$out/oracle"
python -m rlpref.run -m env="$env_id" budget="$budget" seed="$seeds" loss=bt,rr teacher.sigma=0,0.25 \
  hydra.sweep.dir="$out/learned" "$@"
