"""Training: data, masks, losses, feature networks, configuration, the two-stage GAN trainer,
fine-tuning."""
