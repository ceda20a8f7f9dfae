#!/usr/bin/env bash
# The demonstration array's table (docs/results.md, "The paper's table as one SLURM array"): the item-2
# array's shape (budget=paper offline, bt and rr per seed, the same-seed true-reward run) restricted to
# Swimmer-v5 at sigma = 0.25, seeds 0-1, with step counts small enough to finish in minutes on 2 cores.
#   bash docs/results/slurm_array/demo_rows.sh > rows.txt
set -euo pipefail
SMALL="budget.source_steps=245760 budget.n_checkpoints=5 budget.n_feedback=500 budget.agent_steps=163840 \
budget.eval_every=16384 budget.eval_episodes=2"
for s in 0 1; do  # bt and rr of a seed next to each other: they start together and share the source agent
  python -m rlpref.sweep paper env=Swimmer-v5 teacher.sigma=0.25 seed=$s loss=bt,rr $SMALL
done
python -m rlpref.sweep paper env=Swimmer-v5 reward=oracle loss=bt teacher.sigma=0.25 seed=0,1 $SMALL
