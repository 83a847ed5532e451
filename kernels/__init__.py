"""Numba-jitted fused kernels, installed as ``twolayer.kernels``.

Plain functions on arrays: no Python objects, no I/O, nothing imported from twolayer.
"""
