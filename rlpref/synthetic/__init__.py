"""Synthetic track: simulated choices with response times, and how well each loss recovers the utility.

Data flow: :mod:`items` (features, true utility) → :mod:`trials` (choices, response times, strata;
drift diffusion in :mod:`ddm`) → :mod:`learners` (losses from :mod:`rlpref.losses`, plus the track's own
:mod:`rlpref.synthetic.losses`; many fits stacked into one tensor program) → :mod:`grid` (trials ×
fractions × learners, scored with :mod:`rlpref.metrics`) → :mod:`report` (tables, data efficiency,
plots). Entry point: ``python -m rlpref.synthetic``.

Relation to the reference implementation (timokau/response-rank, ``src/responserank/synthetic``):
data generation, learner, optimiser, training length, PDC and accuracy follow it. ``rt_regression`` is
its baseline: the margin regressed onto the inverse of the assumed hyperbolic rt link,
(rt_max − rt_min)/(rt − rt_min) − 1 with 0 and 10 (``train.rt_min``/``train.rt_max``); the
repository-wide scale-free variant is ``rt_regression_std``.

``reference_quirks=true`` reproduces known quirks of the reference code; off by default:

- tied response times (drift-diffusion rts lie on the dt grid) are ranked in pair-index order inside an
  unsplit stratum, as the reference's unstable ``torch.argsort`` does, instead of dealing the stratum
  round-robin into tie-free strata.

Reference behaviours measured to make no difference and therefore not reproduced: keeping the
checkpoint with the lowest training loss (the training loss decreases monotonically in every fit
checked, so it is the final model), and dropping strata of one comparison from the ranking loss
instead of giving them their Bradley–Terry term (rare: ≈1e-3 of fits at 50 training pairs).
"""
