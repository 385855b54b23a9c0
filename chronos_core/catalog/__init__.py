"""What can be described without running anything: devices, models, datasets, optimizers."""
