"""Training: data, masks, losses, feature networks, config, the two-stage trainer, fine-tuning."""
