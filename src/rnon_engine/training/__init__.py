"""Training: configuration, the two-stage GAN trainer, checkpoints."""
