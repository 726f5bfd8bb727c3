"""Explanations of trained models: Grad-RAM heatmaps, PixelCNN sensitivity maps."""
