"""exp and log that LLVM can vectorize, for float32 and float64.

PyPI's llvmlite has no SVML, so ``np.exp`` in a loop is a scalar libm call that stops
the loop from vectorizing; on narrow layers exp is where the time goes. These are the
textbook method: reduce by ln 2 (Cody-Waite), a polynomial, and 2**k built from bits.
Branch-free, so they vectorize; NaN stays NaN, overflow gives inf, underflow 0
(subnormals included). Error: under 2 ulp in float64 and float32 (tests/test_kernels.py measures it).

Call ``vexp(x)`` / ``vlog(x)`` from jitted code; the implementation is chosen by type.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic, overload

# No 'reassoc' here: it would let LLVM fold the two-constant ln 2 reduction into one.
EXACT = {"contract"}


def _bitcast(src, dst, llvm_type):
    """An intrinsic reinterpreting the bits of a ``src`` scalar as a ``dst`` scalar."""

    @intrinsic
    def bitcast(typingctx, x):
        if x != src:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_type)

        return dst(src), codegen

    return bitcast


_f64_from_bits = _bitcast(types.int64, types.float64, ir.DoubleType())
_bits_from_f64 = _bitcast(types.float64, types.int64, ir.IntType(64))
_f32_from_bits = _bitcast(types.int32, types.float32, ir.FloatType())
_bits_from_f32 = _bitcast(types.float32, types.int32, ir.IntType(32))


def _target_has_avx512():
    """Whether Numba compiles for AVX-512F, by Numba's own rule (NUMBA_CPU_FEATURES, else
    the host's features). Compiled code, and Numba's cache, follow the same features."""
    try:
        from numba.core.codegen import get_host_cpu_features
    except ImportError:  # a Numba without this helper: the portable form
        return False
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return "+avx512f" in features.split(",")


# The last step of exp, p * 2**k: with AVX-512, one vscalefpd (LLVM's ldexp), which gets
# subnormal and overflowing results right by itself; float64 exp 0.87 -> 0.76 ns. Without
# AVX-512 LLVM expands a vector ldexp into a slow sequence (6.5 against 1.6 ns per exp
# measured with AVX2 features), so there 2**k is built from bits as two factors.
SCALE_BY_LDEXP = _target_has_avx512()


@intrinsic
def _ldexp(typingctx, x, k):
    """x * 2**k (llvm.ldexp) for a float32 or float64 x and an int32 k."""
    if x not in (types.float32, types.float64) or k != types.int32:
        return None

    def codegen(context, builder, signature, args):
        fty = context.get_value_type(signature.args[0])
        name = "llvm.ldexp.f64.i32" if signature.args[0] == types.float64 else "llvm.ldexp.f32.i32"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(fty, [fty, ir.IntType(32)]), name)
        return builder.call(fn, args)

    return x(x, k), codegen


@njit(fastmath=EXACT, error_model="numpy")
def horner(c, x):
    """c[0] + c[1] x + ... + c[n] x^n for a tuple of constants c (the loop unrolls)."""
    p = c[len(c) - 1]
    for i in range(len(c) - 2, -1, -1):
        p = p * x + c[i]
    return p


LN2_HI = 6.93147180369123816490e-01  # ln 2 with its low 32 bits zero: k * LN2_HI is exact
LN2_LO = 1.90821492927058770002e-10
LOG2E = 1.4426950408889634
# exp(r) on |r| <= ln2/2: the degree-11 polynomial interpolating exp at the Chebyshev
# nodes (coefficients from a long-double solve), 0.7 ulp from exp over that range;
# one multiply-add fewer than the Taylor polynomial of the same accuracy.
_EXP64 = (
    1.0,
    1.0,
    0.5000000000000018,
    0.16666666666666702,
    0.04166666666648878,
    0.008333333333310856,
    0.0013888888952165966,
    0.00019841269904726056,
    2.4801485628212104e-05,
    2.755723022815189e-06,
    2.7632588526479853e-07,
    2.5112871383624673e-08,
)


@njit(fastmath=EXACT, error_model="numpy")
def exp64(x):
    xc = min(max(x, -746.0), 710.0)  # past these exp is 0 or inf anyway; keeps k in int range
    k = np.floor(xc * LOG2E + 0.5)
    r = (xc - k * LN2_HI) - k * LN2_LO
    p = horner(_EXP64, r)
    if SCALE_BY_LDEXP:
        y = _ldexp(p, np.int32(k))
    else:
        # 2**k as two factors, so that k down to -1076 (subnormal results) and up to 1024
        # (overflow to inf) need no special case.
        ki = np.int64(k)
        k1 = ki >> 1
        s1 = _f64_from_bits((k1 + 1023) << 52)
        s2 = _f64_from_bits((ki - k1 + 1023) << 52)
        y = p * s1 * s2
    return y if x == x else x  # NaN in, NaN out (the clamp above would lose it)


_LN2_F32_HI = np.float32(0.693359375)  # exact in float32, few significant bits
_LN2_F32_LO = np.float32(-2.12194440e-4)
_LOG2E_F32 = np.float32(LOG2E)
# Degree 6, interpolating at the Chebyshev nodes as above: 0.8 ulp (float32) from exp.
_EXP32 = tuple(
    np.float32(c)
    for c in (1.0, 1.0, 0.5, 0.16666415333747864, 0.04166635125875473, 0.00837512593716383, 0.0013941108481958508)
)
_F32_LO = np.float32(-104.0)
_F32_HI = np.float32(89.0)
_HALF32 = np.float32(0.5)


@njit(fastmath=EXACT, error_model="numpy")
def exp32(x):
    xc = min(max(x, _F32_LO), _F32_HI)
    k = np.floor(xc * _LOG2E_F32 + _HALF32)
    r = (xc - k * _LN2_F32_HI) - k * _LN2_F32_LO
    p = horner(_EXP32, r)
    ki = np.int32(k)
    if SCALE_BY_LDEXP:
        y = _ldexp(p, ki)
    else:
        # Numba widens int32 arithmetic to int64: narrow explicitly before the bitcast.
        k1 = ki >> 1
        s1 = _f32_from_bits(np.int32((k1 + 127) << 23))
        s2 = _f32_from_bits(np.int32((ki - k1 + 127) << 23))
        y = p * s1 * s2
    return y if x == x else x


_SQRT2 = math.sqrt(2.0)
LN2 = math.log(2.0)
# 1/(2n+1), n = 0..10: |f| <= 0.1716, so the series' remainder is below 1e-17.
_LOG64 = tuple(1.0 / (2 * n + 1) for n in range(11))


@njit(fastmath=EXACT, error_model="numpy")
def log64(x):
    """log of a positive normal float64 (the softmax normalizer, which is >= 1).

    x = m * 2**e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(f), f = (m-1)/(m+1).
    Zero, negative and subnormal inputs are outside its contract; NaN and inf pass through.
    """
    bits = _bits_from_f64(x)
    e = ((bits >> 52) & 0x7FF) - 1023
    m = _f64_from_bits((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)  # in [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    s = horner(_LOG64, f2)  # 2 atanh(f) = 2 f (1 + f^2/3 + f^4/5 + ...)
    y = e * LN2_HI + (2.0 * f * s + e * LN2_LO)
    return y if x < math.inf else x  # NaN and inf pass through


_SQRT2_F32 = np.float32(_SQRT2)
_ONE32 = np.float32(1.0)
_TWO32 = np.float32(2.0)
_LOG_F32 = tuple(np.float32(1.0 / n) for n in (1, 3, 5, 7, 9))


@njit(fastmath=EXACT, error_model="numpy")
def log32(x):
    bits = _bits_from_f32(x)
    e = ((bits >> 23) & 0xFF) - 127
    m = _f32_from_bits(np.int32((bits & 0x007FFFFF) | 0x3F800000))
    big = m > _SQRT2_F32
    m = m * _HALF32 if big else m
    e = e + 1 if big else e
    f = (m - _ONE32) / (m + _ONE32)
    f2 = f * f
    s = horner(_LOG_F32, f2)
    ef = np.float32(e)
    y = ef * _LN2_F32_HI + (_TWO32 * f * s + ef * _LN2_F32_LO)
    return y if x < np.float32(math.inf) else x


def vexp(x):
    """exp(x), vectorizable; float32 or float64 by the type of x (jitted code only)."""
    raise NotImplementedError("vexp is for jitted code")


def vlog(x):
    """log(x) for positive normal x, vectorizable; float32 or float64 (jitted code only)."""
    raise NotImplementedError("vlog is for jitted code")


def _by_type(stub, f64, f32):
    """Make ``stub`` call ``f64`` or ``f32`` in jitted code, by the type of its argument."""

    @overload(stub)
    def _impl(x):
        if x == types.float64:
            return lambda x: f64(x)
        if x == types.float32:
            return lambda x: f32(x)
        return None


_by_type(vexp, exp64, exp32)
_by_type(vlog, log64, log32)
