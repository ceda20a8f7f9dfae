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
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# shellcheck disable=SC2086  # a row is a list of Hydra overrides, split on spaces on purpose
exec "${PYTHON:-python}" -m rlpref.run $row hydra.run.dir="$sweep_dir/$task" torch_threads="${SLURM_CPUS_PER_TASK:-1}"
