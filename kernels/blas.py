"""Row-major GEMM with accumulation, callable from jitted code.

Numba's own np.dot cannot accumulate (C += A B) and would need a pass over C per chunk.
This calls CBLAS ?gemm with 64-bit integers through two C symbols that
twolayer/blas.py binds to NumPy's own OpenBLAS before any kernel loads (symbols, not
addresses, so kernels that use them can still be cached).
"""
from numba import njit, types
from numba.extending import overload

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _cblas_signature(real):
    return types.void(
        types.int32, types.int32, types.int32,  # order, transa, transb
        types.int64, types.int64, types.int64,  # m, n, k
        real, types.voidptr, types.int64,  # alpha, a, lda
        types.voidptr, types.int64,  # b, ldb
        real, types.voidptr, types.int64,  # beta, c, ldc
    )


_CBLAS = {
    types.float64: types.ExternalFunction("twolayer_cblas_dgemm", _cblas_signature(types.float64)),
    types.float32: types.ExternalFunction("twolayer_cblas_sgemm", _cblas_signature(types.float32)),
}


def cblas_gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm, row-major, chosen by the type of alpha (jitted code only)."""
    raise NotImplementedError("cblas_gemm is for jitted code")


@overload(cblas_gemm)
def _cblas_gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    fn = _CBLAS.get(alpha)
    if fn is None:
        return None

    def impl(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        fn(_ROW_MAJOR, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    return impl


@njit(nogil=True)
def gemm(a, trans_a, b, trans_b, c, beta):
    """c = op(a) @ op(b) + beta * c, all C-contiguous 2-D arrays of one float dtype.

    op(x) is x.T when trans_x is True.
    """
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    real = c.dtype.type
    if k == 0:  # op(a) @ op(b) is zero; BLAS may not accept k = 0
        if beta == 0:
            c[:] = 0
        else:
            c[:] *= real(beta)
        return
    cblas_gemm(_TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS, m, n, k, real(1.0),
               a.ctypes, a.shape[1], b.ctypes, b.shape[1], real(beta), c.ctypes, n)
