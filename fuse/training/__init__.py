"""Training the members of a run: the request (request: options checked before any work, run ids),
the systems of a request (systems), the one loop over seeds x folds (loop) on the member-batched
ensemble (ensemble, bf16 on CPUs), LightGBM's CV (estimators), progress lines (progress), a run's
trained members (members: predict, save) and reloading a run folder (saved_run).

Imports: cache, fuse.metrics, fuse.folders, fuse.models, fuse.inputs.
"""
