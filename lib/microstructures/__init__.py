"""Microstructure generators: Part A dual-phase steels, Part B stochastic two-phase images."""
