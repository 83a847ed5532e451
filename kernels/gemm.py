"""Row-major GEMM with accumulation, callable from jitted code.

Numba's own np.dot cannot accumulate (C += A B) and would need a pass over C per tile.
This calls CBLAS ?gemm through two C symbols, ``twolayer_cblas_dgemm`` and
``twolayer_cblas_sgemm``, with 64-bit integers (the ILP64 interface). twolayer/fast/
numpy_blas.py binds them to NumPy's own BLAS before any kernel loads: symbols, not
addresses, so kernels that use them can still be cached. A BLAS with 32-bit integers
(LP64) is reached through ``lp64_adapters``, compiled functions with the 64-bit
signature that call it; OpenBLAS's AVX-512 small-matrix kernels, where OpenBLAS itself
runs narrower ones, through ``direct_dispatchers`` (the end of this file).
"""

from numba import cfunc, njit, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

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


def _row_major_gemm(symbols):
    """A function for jitted code, ``f(transa, transb, m, n, k, alpha, a, lda, b, ldb,
    beta, c, ldc)``: the row-major cblas_?gemm behind ``symbols[kind]`` (ILP64
    signature), chosen by the type of alpha."""
    table = {
        REALS[kind]: types.ExternalFunction(symbols[kind], _cblas_signature(REALS[kind], types.int64))
        for kind in symbols
    }

    def row_major_gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        raise NotImplementedError("for jitted code")

    @overload(row_major_gemm)
    def _impl(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        fn = table.get(alpha)
        if fn is None:
            return None

        def impl(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
            fn(_ROW_MAJOR, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

        return impl

    return row_major_gemm


cblas_gemm = _row_major_gemm(SYMBOLS)  # what the kernels call


# Inlined at Numba's level: called with eight combinations of array types on the BLAS
# path, each a function of its own to compile otherwise (0.7-3 s of a cold first call).
@njit(nogil=True, inline="always")
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


# ---------------------------------------------------------------------------
# OpenBLAS's AVX-512 "small matrix" kernels (kernel/x86_64/?gemm_small_kernel_*_skylakex.c),
# called directly where OpenBLAS itself runs narrower kernels on an AVX-512 CPU (0.3.31
# takes its Haswell kernels on a Zen 5). They work on the operands as they lie (no
# packing, no threads, no state), column-major, with 64-bit sizes in every build (LP64 or
# ILP64); "b0" variants never read C, which may hold anything when beta = 0.

SMALL_OPS = ("nn", "nt", "tn", "tt")


def small_symbol(kind, beta0, ops):
    """Our name for OpenBLAS's ``{kind}gemm_small_kernel_[b0_]{ops}_SKYLAKEX``."""
    return f"twolayer_small_{kind}gemm_{'b0_' if beta0 else ''}{ops}"


def _small_signature(real, beta0):
    i64, p = types.int64, types.voidptr
    beta = () if beta0 else (real,)
    # m, n, k, a, lda, alpha, b, ldb, [beta,] c, ldc
    return types.int32(i64, i64, i64, p, i64, real, p, i64, *beta, p, i64)


_SMALL = {
    REALS[kind]: {
        (beta0, ops): types.ExternalFunction(small_symbol(kind, beta0, ops), _small_signature(REALS[kind], beta0))
        for beta0 in (True, False)
        for ops in SMALL_OPS
    }
    for kind in REALS
}
LIBRARY_SYMBOLS = {"d": "twolayer_library_dgemm", "s": "twolayer_library_sgemm"}
_library_gemm = _row_major_gemm(LIBRARY_SYMBOLS)  # the library's own GEMM, ILP64 signature
SMALL_MIN_K = 32
BIG_C = 1 << 17  # elements of C from which a short k loses, and a long k goes in slices
# A B with a long inner size on a big C goes in slices of SMALL_K_SLICE along k (beta = 1
# after the first), so that a 32-row strip of A stays in L1 across C's columns
# ((256, 1024) x 1024, one thread: float32 4.19 -> 3.55 ms, float64 9.45 -> 7.55 ms; at
# (128, 128) x 784 it lost, 131 -> 148 us, hence the big C only).
SMALL_K_SLICE = 256


@njit(nogil=True)
def small_kernel_wins(trans_a, trans_b, m, n, k):
    """Whether the direct kernel beats OpenBLAS's packed Haswell GEMM on row-major
    C (m, n) = op(A) op(B) with inner size k. Measured on a Zen 5, one thread: 1.2-2.4x
    faster from k = 32 on; with a shorter k it lost on a big C ((1024, 1024), k = 16:
    0.2-0.9x) and on A B^T (k = 5..10: 0.6-0.9x), and won elsewhere (1.1-2x)."""
    if k >= SMALL_MIN_K:
        return True
    return m * n < BIG_C and not (trans_b and not trans_a)


def _small_gemm(first_t, second_t, beta0, m, n, k, a, lda, alpha, b, ldb, beta, c, ldc):
    """Column-major C (m, n) = alpha op(A) op(B) [+ beta C] through the direct kernel of
    that float type and variant (jitted code only)."""
    raise NotImplementedError("jitted code only")


@overload(_small_gemm)
def _small_gemm_impl(first_t, second_t, beta0, m, n, k, a, lda, alpha, b, ldb, beta, c, ldc):
    f = _SMALL.get(alpha)
    if f is None:
        return None
    b0_nn, b0_nt, b0_tn, b0_tt = (f[True, ops] for ops in SMALL_OPS)
    nn, nt, tn, tt = (f[False, ops] for ops in SMALL_OPS)

    def impl(first_t, second_t, beta0, m, n, k, a, lda, alpha, b, ldb, beta, c, ldc):
        # one call per variant: jitted code cannot hold an external function as a value
        if beta0:
            if not first_t and not second_t:
                b0_nn(m, n, k, a, lda, alpha, b, ldb, c, ldc)
            elif not first_t:
                b0_nt(m, n, k, a, lda, alpha, b, ldb, c, ldc)
            elif not second_t:
                b0_tn(m, n, k, a, lda, alpha, b, ldb, c, ldc)
            else:
                b0_tt(m, n, k, a, lda, alpha, b, ldb, c, ldc)
        elif not first_t and not second_t:
            nn(m, n, k, a, lda, alpha, b, ldb, beta, c, ldc)
        elif not first_t:
            nt(m, n, k, a, lda, alpha, b, ldb, beta, c, ldc)
        elif not second_t:
            tn(m, n, k, a, lda, alpha, b, ldb, beta, c, ldc)
        else:
            tt(m, n, k, a, lda, alpha, b, ldb, beta, c, ldc)

    return impl


def _size_and_one(x):
    raise NotImplementedError("jitted code only")


@overload(_size_and_one)
def _size_and_one_impl(x):
    """The itemsize of float type x, and 1 of that type."""
    dtype = as_dtype(x)
    size, one = dtype.itemsize, dtype.type(1)
    return lambda x: (size, one)


@intrinsic
def _offset(typingctx, pointer, nbytes):
    """pointer + nbytes, a void pointer."""

    def codegen(context, builder, sig, args):
        return builder.gep(args[0], [args[1]])

    return types.voidptr(types.voidptr, types.int64), codegen


# Where OpenBLAS runs its own AVX-512 kernels (SkylakeX), its packed GEMM beats the direct
# kernel on a B with long rows, which the direct kernel walks with a stride of a row per
# step of k (Xeon, one thread, x (m, 1024) W1[:, :128] with W1's rows 1024 long: 0.41-0.81x
# from m = 16; 784 long rows of 128: 1.01-1.26x); the direct kernel still wins on short
# rows, writing C once where the packed GEMM zeroes it first (beta = 0) and packs both.
LIBRARY_MIN_LDB = 257


@njit(nogil=True)
def _dispatch(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, library_avx512):
    ta, tb = transa == _TRANS, transb == _TRANS
    # row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T
    if library_avx512:
        if ldb < LIBRARY_MIN_LDB and small_kernel_wins(ta, tb, m, n, k):
            _small_gemm(tb, ta, beta == 0, n, m, k, b, ldb, alpha, a, lda, beta, c, ldc)
        else:
            _library_gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    elif not ta and not tb and k >= 2 * SMALL_K_SLICE and m * n >= BIG_C:
        size, one = _size_and_one(alpha)
        for k0 in range(0, k, SMALL_K_SLICE):  # A's columns and B's rows k0 .. k0 + slice
            a_k, b_k, kk = _offset(a, k0 * size), _offset(b, k0 * ldb * size), min(SMALL_K_SLICE, k - k0)
            beta_k = beta if k0 == 0 else one
            _small_gemm(False, False, beta_k == 0, n, m, kk, b_k, ldb, alpha, a_k, lda, beta_k, c, ldc)
    elif small_kernel_wins(ta, tb, m, n, k):
        _small_gemm(tb, ta, beta == 0, n, m, k, b, ldb, alpha, a, lda, beta, c, ldc)
    else:
        _library_gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


def direct_gemm(order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm with 64-bit sizes, row-major (as ``gemm`` calls it): the direct kernel
    where it wins over OpenBLAS's GEMM with narrower kernels, else the library's GEMM
    (LIBRARY_SYMBOLS). Compiled as a C callback by ``direct_dispatchers``."""
    _dispatch(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, False)


def direct_gemm_beside_avx512(order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """direct_gemm where OpenBLAS's GEMM runs AVX-512 kernels itself: the direct kernel
    only on a B with short rows (LIBRARY_MIN_LDB)."""
    _dispatch(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, True)


def direct_dispatchers(library_avx512=False):
    """{kind: compiled direct_gemm (or direct_gemm_beside_avx512)} with the ILP64 signature,
    to bind SYMBOLS to (the direct kernels and LIBRARY_SYMBOLS must be bound first); cached
    like the kernels."""
    fn = direct_gemm_beside_avx512 if library_avx512 else direct_gemm
    return {kind: cfunc(_cblas_signature(real, types.int64), cache=True)(fn) for kind, real in REALS.items()}
