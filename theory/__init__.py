"""robustgen.theory: pure mathematics of robust classification (numpy, numba, sympy; no torch).

Modules are named after what they implement; see README.md for the map from theorem to module.
"""
