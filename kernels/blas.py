"""Row-major GEMM with accumulation, callable from jitted code.

Numba's own np.dot cannot accumulate (C += A B) and would need a pass over C per chunk.
This calls the same BLAS that np.dot uses inside Numba -- SciPy's, through Numba's
``numba_xxgemm`` helper (a C symbol, so kernels that use it can still be cached).
"""
import numpy as np
from numba import njit, types

_xxgemm = types.ExternalFunction(
    "numba_xxgemm",
    types.intc(
        types.char, types.char, types.char,  # kind ('s' or 'd'), transa, transb
        types.intp, types.intp, types.intp,  # m, n, k
        types.voidptr, types.voidptr, types.intp,  # alpha, a, lda
        types.voidptr, types.intp, types.voidptr,  # b, ldb, beta
        types.voidptr, types.intp,  # c, ldc
    ),
)
_N, _T = ord("n"), ord("t")


@njit(nogil=True)
def gemm(a, trans_a, b, trans_b, c, beta):
    """c = op(a) @ op(b) + beta * c, all C-contiguous 2-D arrays of one float dtype.

    op(x) is x.T when trans_x is True. A row-major matrix is the column-major storage of
    its transpose, so this is the column-major call c^T = op(b)^T op(a)^T.
    """
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    coef = np.empty(2, c.dtype)
    coef[0] = 1
    coef[1] = beta
    if k == 0:
        c[:] *= coef[1]  # op(a) @ op(b) is zero; BLAS may not accept k = 0
        return
    tb = _T if trans_b else _N
    ta = _T if trans_a else _N
    kind = ord("d") if c.itemsize == 8 else ord("s")
    _xxgemm(kind, tb, ta, n, m, k, coef[:1].ctypes, b.ctypes, b.shape[1], a.ctypes, a.shape[1],
            coef[1:].ctypes, c.ctypes, n)
