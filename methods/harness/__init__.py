"""The one training loop every method shares: optimiser, schedule, EMA, precision, checkpoints, DDP."""
