"""Fine-tuning pretrained StyleGAN2 checkpoints on a target image set."""
