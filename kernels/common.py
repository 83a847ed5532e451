"""What every kernel shares: compiler flags, the parameter views, chunked workspaces
and the fixed-order reduction of per-chunk results."""
from numba import njit

from ..layout import param_offsets

# fastmath without 'nnan'/'ninf': NaN and inf keep their IEEE meaning (a NaN input must
# never come out as a finite cost); 'reassoc' lets reductions vectorize, 'contract' fuses
# multiply-adds. error_model="numpy": x / 0 is inf, not a Python exception (whose check
# stops loops from vectorizing). nogil: Python threads may call kernels concurrently.
FASTMATH = {"contract", "reassoc", "arcp", "nsz"}
JIT = dict(fastmath=FASTMATH, error_model="numpy", nogil=True)
# Only the entry kernels (the ones twolayer.fast calls) are cached. A helper loaded from
# the cache is object code that its caller cannot inline, so a caller compiled next to
# cached helpers differs, at the last bit, from one compiled with fresh helpers: results
# would then depend on the state of the cache. Uncached helpers are always fresh IR.
ENTRY = dict(JIT, cache=True)

# The layout's one definition (twolayer/layout.py), compiled for use inside kernels.
_offsets = njit(param_offsets)


@njit(**JIT)
def param_views(params, Dx, H, Dy):
    """W1 (Dx, H), b1 (H,), W2 (H, Dy), b2 (Dy,) as views of the flat params (P,)."""
    o_W1, o_b1, o_W2, o_b2, end = _offsets(Dx, H, Dy)
    return (
        params[o_W1:o_b1].reshape((Dx, H)),
        params[o_b1:o_W2],
        params[o_W2:o_b2].reshape((H, Dy)),
        params[o_b2:end],
    )


# A chunked kernel gets one flat workspace ws, cut into equal regions, one per chunk:
# [gradient accumulator (P) | the chunk's scratch]. Chunk 0 accumulates straight into
# grad, so its accumulator goes unused; the others are added to grad in chunk order.


@njit(**JIT)
def chunk_workspace(c, ws, stride, grad):
    """(gradient accumulator (P,), scratch) of chunk c; the chunk initializes its accumulator."""
    P = grad.shape[0]
    region = ws[c * stride : (c + 1) * stride]
    acc = grad if c == 0 else region[:P]
    return acc, region[P:]


@njit(**JIT)
def reduce_chunks(ws, stride, costs, grad):
    """grad += the accumulators of chunks 1.. in chunk order; returns the summed cost.

    The order does not depend on which thread ran which chunk, so results are bitwise
    the same for any thread count.
    """
    P = grad.shape[0]
    for c in range(1, costs.shape[0]):
        acc = ws[c * stride : c * stride + P]
        for p in range(P):
            grad[p] += acc[p]
    cost = 0.0
    for c in range(costs.shape[0]):
        cost += costs[c]
    return cost
