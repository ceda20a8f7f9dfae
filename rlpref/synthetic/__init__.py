"""Synthetic track: simulated choices with response times, and how well each loss recovers the utility.

Data flow: :mod:`items` (features, true utility) → :mod:`trials` (choices, response times, strata;
drift diffusion in :mod:`ddm`) → :mod:`learners` (losses from :mod:`rlpref.losses`, many fits stacked
into one tensor program) → :mod:`grid` (trials × fractions × learners, scored with :mod:`rlpref.metrics`)
→ :mod:`report` (tables, data efficiency, plots). Entry point: ``python -m rlpref.synthetic``.
"""
