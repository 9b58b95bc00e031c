"""`fastrft sweep`: grids of training runs, each in its own process and run directory, on
this machine or over a Ray cluster, with a ledger that makes reruns resume; and the ASHA search
of lr and weight decay.

spec (SWEEP.yaml -> runs), plan (whose root, what is left), ledger, rundir (a run directory as
a sweep sees it), launch (a run's process), tracker (states and retries), local, ray_backend,
tune, cli.
"""
