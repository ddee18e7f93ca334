"""Training: pure steps, optimizers, the loop, checkpoints and metrics."""
