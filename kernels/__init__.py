"""Numba-jitted fused kernels, installed as ``twolayer.kernels``.

Plain functions on arrays: no Python objects, no I/O; from twolayer only the parameter
layout (twolayer/layout.py, its one definition).
"""
