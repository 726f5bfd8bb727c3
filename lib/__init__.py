"""The study's library: microstructure generators, SfePy finite elements, models, explanations.

Notebooks and ``run_all.py`` call into this package; it never imports from them.
"""
