"""Neural networks: VQ-VAE, PixelCNN, ResNet-18 regressors, and their training loop."""
