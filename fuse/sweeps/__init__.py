"""Many runs: the plan of a sweep (plan: feature combinations x models x grid), its trials and their
run ids (trials, params: Optuna distributions), the shared study that queues them across workers
and machines (study, stopping), the worker loop (run), the leaderboard and the report.

Imports: cache, fuse.metrics, fuse.folders, fuse.models, fuse.inputs, fuse.training, fuse.results.
"""
