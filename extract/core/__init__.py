"""What every feature family shares: the Extractor base and registry (base), decoding (media),
model loading (models), the run over clips (runner, recorder, progress)."""
