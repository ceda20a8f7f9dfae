#!/usr/bin/env bash
# One task of a SLURM array = one row of a sweep table (the sbatch route; hydra/launcher=slurm is the other).
#
#   python -m rlpref.sweep paper > rows.txt                       # one line of Hydra overrides per run
#   sbatch --array=0-$(( $(wc -l < rows.txt) - 1 ))%64 \
#          --export=ALL,RLPREF_SWEEP_TABLE=$PWD/rows.txt,RLPREF_CACHE=/shared/rlpref_cache scripts/slurm_array.sh
#
# Task i runs `python -m rlpref.run <row i>` with its run folder at $RLPREF_SWEEP_DIR/<i>. All tasks share
# RLPREF_CACHE (put it on a shared file system): stages such as source agents and feedback are built once,
# other tasks wait on the artefact's file lock. A preempted or requeued task resumes at its first missing
# stage. RLPREF_RAW_COMMANDS=1 treats each row as a shell command instead (used by the cluster smoke test).
#SBATCH --job-name=rlpref
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
set -euo pipefail
set -f  # a row's overrides (e.g. hidden=[64,64]) must not be glob-expanded
table=${RLPREF_SWEEP_TABLE:?set RLPREF_SWEEP_TABLE to a file with one row of overrides per task}
task=${SLURM_ARRAY_TASK_ID:?run this script as a SLURM array job (sbatch --array=...)}
[ -f "$table" ] || { echo "slurm_array: sweep table $table not found" >&2; exit 2; }
n_rows=$(grep -c '' "$table")
if [ "$task" -ge "$n_rows" ]; then
  echo "slurm_array: task $task but $table has only $n_rows rows (array indices are 0-based)" >&2
  exit 2
fi
row=$(sed -n "$((task + 1))p" "$table")
echo "slurm_array: job ${SLURM_ARRAY_JOB_ID:-?} task $task on $(hostname) (restart ${SLURM_RESTART_COUNT:-0}): $row"
if [ "${RLPREF_RAW_COMMANDS:-0}" = "1" ]; then
  exec bash -c "$row"
fi
sweep_dir=${RLPREF_SWEEP_DIR:-multirun/slurm_${SLURM_ARRAY_JOB_ID:-local}}
run_dir="$sweep_dir/$task"
# A rerun of the array (same table, same RLPREF_SWEEP_DIR) skips the rows that finished; a folder that holds
# another row's run (the table changed under it) is an error, never overwritten.
if [ -f "$run_dir/row.txt" ] && [ "$(cat "$run_dir/row.txt")" != "$row" ]; then
  echo "slurm_array: $run_dir holds the run of another row: '$(cat "$run_dir/row.txt")'; use a new RLPREF_SWEEP_DIR" >&2
  exit 2
fi
if [ -f "$run_dir/results.json" ] && [ -f "$run_dir/row.txt" ]; then
  echo "slurm_array: task $task already finished ($run_dir/results.json); skipped"
  exit 0
fi
mkdir -p "$run_dir"
printf '%s\n' "$row" >"$run_dir/row.txt"
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# shellcheck disable=SC2086  # a row is a list of Hydra overrides, split on spaces on purpose
exec "${PYTHON:-python}" -m rlpref.run $row hydra.run.dir="$run_dir" torch_threads="${SLURM_CPUS_PER_TASK:-1}"
