"""Training: run configs and their validation, pure steps, optimizers, the loop, checkpoints,
metrics, and finished runs loaded back for analysis (runs.py)."""
