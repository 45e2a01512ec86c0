"""robustgen.deep: torch side (layers, models, losses, attacks, certification, training, experiments)."""
