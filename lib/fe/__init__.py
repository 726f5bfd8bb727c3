"""Finite elements with SfePy: pixel meshes, periodic homogenization, GTN fracture."""
