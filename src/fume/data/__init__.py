"""Data: the real dataset layout, the synthetic generator, splits, pairing and the paired dataset.

Modules: labels, io, layout, generate, split, pairing, validate, transforms, dataset.
"""
