"""What a run leaves behind: scoring by the MER protocol (scoring: CV and test splits, thresholds,
decision-level fusion weights), the run folder (run_folder: metrics.json, predictions CSVs,
weights), plots, and decision-level fusion of finished runs (decision).

Imports: cache, fuse.metrics, fuse.folders, fuse.models, fuse.inputs, fuse.training.
"""
