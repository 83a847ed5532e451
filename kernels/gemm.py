"""Row-major GEMM with accumulation, callable from jitted code.

Numba's own np.dot cannot accumulate (C += A B) and would need a pass over C per tile.
This calls CBLAS ?gemm through two C symbols, ``twolayer_cblas_dgemm`` and
``twolayer_cblas_sgemm``, with 64-bit integers (the ILP64 interface). twolayer/fast/
numpy_blas.py binds them to NumPy's own BLAS before any kernel loads: symbols, not
addresses, so kernels that use them can still be cached. A BLAS with 32-bit integers
(LP64) is reached through ``lp64_adapters``, compiled functions with the 64-bit
signature that call it.
"""

from numba import cfunc, njit, types
from numba.extending import overload

SYMBOLS = {"d": "twolayer_cblas_dgemm", "s": "twolayer_cblas_sgemm"}
LP64_SYMBOLS = {"d": "twolayer_lp64_cblas_dgemm", "s": "twolayer_lp64_cblas_sgemm"}
REALS = {"d": types.float64, "s": types.float32}
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _cblas_signature(real, index):
    return types.void(
        types.int32,
        types.int32,
        types.int32,  # order, transa, transb
        index,
        index,
        index,  # m, n, k
        real,
        types.voidptr,
        index,  # alpha, a, lda
        types.voidptr,
        index,  # b, ldb
        real,
        types.voidptr,
        index,  # beta, c, ldc
    )


_CBLAS = {
    REALS[kind]: types.ExternalFunction(SYMBOLS[kind], _cblas_signature(REALS[kind], types.int64)) for kind in SYMBOLS
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
    """c = op(a) @ op(b) + beta * c, 2-D arrays of one float dtype whose rows are
    contiguous (C-contiguous arrays, or column ranges of them: their row stride is the
    leading dimension). op(x) is x.T when trans_x is True.
    """
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    real = c.dtype.type
    if k == 0:  # op(a) @ op(b) is zero; BLAS may not accept k = 0
        for i in range(m):
            for j in range(n):
                c[i, j] = 0 if beta == 0 else c[i, j] * real(beta)
        return
    size = c.itemsize
    cblas_gemm(
        _TRANS if trans_a else _NO_TRANS,
        _TRANS if trans_b else _NO_TRANS,
        m,
        n,
        k,
        real(1.0),
        a.ctypes,
        max(a.strides[0] // size, a.shape[1], 1),
        b.ctypes,
        max(b.strides[0] // size, b.shape[1], 1),
        real(beta),
        c.ctypes,
        max(c.strides[0] // size, n),
    )


def lp64_adapters():
    """{kind: compiled function} with the ILP64 signature, calling the LP64 symbols of
    LP64_SYMBOLS (which must be bound first); bind SYMBOLS to their ``.address`` and keep
    them alive. Every size the kernels pass is a tile's rows or a layer width, below 2^31
    (the caller checks the widths)."""
    return {kind: _lp64_adapter(kind) for kind in REALS}


def _lp64_adapter(kind):
    real, i32 = REALS[kind], types.int32
    lp64 = types.ExternalFunction(LP64_SYMBOLS[kind], _cblas_signature(real, i32))

    @cfunc(_cblas_signature(real, types.int64), nopython=True)
    def adapter(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        lp64(order, ta, tb, i32(m), i32(n), i32(k), alpha, a, i32(lda), b, i32(ldb), beta, c, i32(ldc))

    return adapter
