"""The jobs the CLI (and the demo) run: one module per job, one function per command.

A job takes the Settings and plain values, does the work (reading the export, training,
scoring, writing), reports progress through a `Reporter` and returns its result for the
caller to print. This is the only part of `serving` that imports `training` (STYLE §1;
`tests/test_layers.py` checks it); the CLI imports each job module inside its command,
so `baoxue --help` imports neither training nor MLflow.
"""
