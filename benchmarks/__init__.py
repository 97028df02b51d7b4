"""Benchmarks of the model, the Predictor, the live node and training (not installed).

Run from a source checkout: ``python -m benchmarks model|predictor|node|training|all``.
"""
