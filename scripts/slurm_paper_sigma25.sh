#!/usr/bin/env bash
# Issue 38 item 2 as one SLURM job array over scripts/slurm_array.sh: budget=paper (offline protocol, 1M source
# and agent steps, 5000 comparisons; merge-v0: its steps_scale 0.1), bt and rr, seeds 0-4, in cells
#   sigma = 0.25: HalfCheetah-v5, Swimmer-v5, Walker2d-v5, merge-v0       sigma = 0: Swimmer-v5
# plus each (env, seed)'s true-reward run (reward=oracle) at the same budget: 70 tasks, Swimmer-v5's first;
# then Walker2d-v5 again with reward_norm=step (rows 70-79, seed by seed): with the reference's normalisation
# (return) every agent on a learned Walker2d reward learned to fall (docs/results.md says why).
#
#   scripts/slurm_paper_sigma25.sh rows [OVERRIDE...]        print the table (one row of overrides per task)
#   scripts/slurm_paper_sigma25.sh submit DIR [OVERRIDE...]  write DIR/rows.txt, submit the array over it
#
# submit: runs land in DIR/runs/<task>, the stage cache in $RLPREF_CACHE (default DIR/cache; put both on a file
# system every node sees), task logs in DIR/logs. PARALLEL (default 64) tasks run at once; SBATCH_ARGS adds
# sbatch options (e.g. "--partition=cpu --time=06:00:00"). Rerunning the same submit command skips the rows
# whose results.json exists and resumes the others at their first missing stage (source and agent stages
# from their last saved state), so a cancelled, timed-out or failed array is finished by submitting it again.
# OVERRIDEs go into every row (e.g. seed=0,1 to run two seeds; budget.agent_steps=... for a smaller test).
# WAVES=2 submits two arrays over the same table instead of one: first each (env, seed)'s first learned row
# (it builds the source agent and segments) and the true-reward rows, then the rest with
# --dependency=afterany on the first, so no task holds a core while it waits on another's lock
# (python -m rlpref.sweep --waves picks the rows; docs/results.md prices both ways).
# ONLY=INDICES (rows and ranges, e.g. 70-79 or 44,46-49) submits just those rows of the table (one array; not with
# WAVES=2). A table may grow at its end (new rows, new indices): the rows already in DIR/rows.txt must stay.
# Report: python -m rlpref.report DIR/runs
set -euo pipefail
set -f  # overrides such as seed=0,1 must reach rlpref.sweep as written
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

rows() {  # per env, cheapest first (a small allocation finishes whole cells early): its learned cells, bt of
  # seeds 0-4 then rr (rr of a seed then finds the source agent bt built), then its true-reward runs
  local env
  "$PY" -m rlpref.sweep paper env=Swimmer-v5 teacher.sigma=0.25,0 "$@"
  oracle Swimmer-v5 "$@"
  for env in HalfCheetah-v5 Walker2d-v5 merge-v0; do
    "$PY" -m rlpref.sweep paper env="$env" teacher.sigma=0.25 "$@"
    oracle "$env" "$@"
  done
  # appended later (earlier rows keep their indices): Walker2d-v5 on imitation's reward normalisation, seed by
  # seed (a stable sort on the seed), so a partial run still pairs bt and rr
  "$PY" -m rlpref.sweep paper env=Walker2d-v5 teacher.sigma=0.25 reward_norm=step "$@" | "$PY" -c '
import sys
rows = sys.stdin.read().splitlines()
seed = lambda row: float([t for t in row.split() if t.startswith("seed=")][-1][5:])
sys.stdout.write("".join(r + "\n" for r in sorted(rows, key=seed)))'
}

oracle() {  # the true reward reads neither the loss nor the teacher: one run per (env, seed), recorded as bt, sigma 0
  local env=$1; shift
  "$PY" -m rlpref.sweep paper reward=oracle loss=bt teacher.sigma=0 env="$env" "$@"
}

submit() {
  local dir=$1; shift
  case "${WAVES:-1}" in 1|2) ;; *) echo "slurm_paper_sigma25: WAVES=${WAVES} (use 1: one array, or 2: stage-building rows first)" >&2; exit 2 ;; esac
  if [ -n "${ONLY:-}" ] && [ "${WAVES:-1}" = 2 ]; then
    echo "slurm_paper_sigma25: ONLY=$ONLY picks rows by hand; WAVES=2 picks them itself (use one of the two)" >&2; exit 2
  fi
  mkdir -p "$dir/logs"
  dir=$(cd "$dir" && pwd)
  local table="$dir/rows.txt" new="$dir/.rows.new"
  rows "$@" >"$new"
  if [ -f "$table" ] && [ "$(head -n "$(grep -c '' "$table")" "$new")" != "$(cat "$table")" ]; then
    rm -f "$new"  # a row that changed would reuse another row's run folder; new rows at the end are fine
    echo "slurm_paper_sigma25: $table holds another table (other overrides or code); use a new DIR" >&2
    exit 2
  fi
  mv "$new" "$table"
  local n cache=${RLPREF_CACHE:-$dir/cache}
  n=$(grep -c '' "$table")
  [ "$n" -gt 0 ] || { echo "slurm_paper_sigma25: $table has no rows" >&2; exit 2; }
  [ -z "${ONLY:-}" ] || only_fits "$ONLY" "$n" "$table"
  case "${WAVES:-1}" in
    1) array "$dir" "$cache" "${ONLY:-0-$((n - 1))}" ;;
    2) local specs lead rest job
       specs=$("$PY" -m rlpref.sweep --waves "$table")
       lead=$(sed -n 1p <<<"$specs"); rest=$(sed -n 2p <<<"$specs")
       job=$(array "$dir" "$cache" "$lead")
       echo "$job"
       [ -z "$rest" ] || array "$dir" "$cache" "$rest" --dependency="afterany:${job%%;*}" ;;
  esac
}

only_fits() {  # SPEC N TABLE: every index in SPEC names a row; a task past the end would fail only once it ran
  local spec=$1 n=$2 table=$3 part lo hi parts
  IFS=, read -ra parts <<<"$spec"
  for part in "${parts[@]}"; do
    if [[ ! $part =~ ^([0-9]+)(-([0-9]+))?$ ]]; then
      echo "slurm_paper_sigma25: ONLY=$spec: '$part' is not a row index or range (e.g. ONLY=70-79 or ONLY=44,46-49)" >&2
      exit 2
    fi
    lo=$((10#${BASH_REMATCH[1]})); hi=$((10#${BASH_REMATCH[3]:-$lo}))
    if [ "$lo" -gt "$hi" ] || [ "$hi" -ge "$n" ]; then
      echo "slurm_paper_sigma25: ONLY=$spec: '$part' is outside $table's rows 0-$((n - 1))" >&2
      exit 2
    fi
  done
}

array() {  # DIR CACHE INDICES [SBATCH OPTION...]: one array over rows INDICES of DIR/rows.txt; prints its job id
  local dir=$1 cache=$2 indices=$3; shift 3
  # shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
  sbatch --parsable --array="$indices%${PARALLEL:-64}" --output="$dir/logs/task_%A_%a.out" ${SBATCH_ARGS:-} "$@" \
    --export="ALL,RLPREF_SWEEP_TABLE=$dir/rows.txt,RLPREF_SWEEP_DIR=$dir/runs,RLPREF_CACHE=$cache,PYTHON=$PY" \
    scripts/slurm_array.sh
}

case "${1:-}" in
  rows) shift; rows "$@" ;;
  submit) [ -n "${2:-}" ] || { echo "usage: $0 submit DIR [OVERRIDE...]" >&2; exit 2; }; shift; submit "$@" ;;
  *) echo "usage: $0 rows [OVERRIDE...] | submit DIR [OVERRIDE...]" >&2; exit 2 ;;
esac
