"""advisor: choose the pretrained StyleGAN2 checkpoint to fine-tune for a small image dataset."""

__version__ = "0.1.0"
