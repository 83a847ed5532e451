"""What every kernel shares: compiler flags, cheap 2-D views and the parameter views,
the softmax and cross-entropy of one row or of a transposed tile (and the packing of
rows into such a tile, and cache hints for rows to come), chunked workspaces and the
fixed-order reduction of per-chunk results.

The vocabulary of every kernel, defined here once:
- a tile is the rows taken through every stage at once (transposed on the narrow path);
- a chunk is a share of the batch fixed by the batch, never by the thread count, with its
  own gradient accumulator; accumulators are summed in chunk order;
- a block is the chunks one thread runs, each taken as it finishes the one before (shared
  out at run time: pool.next_task), in one scratch region.
The stages of a layer pair are hidden_forward, output_forward, output_backward and
hidden_backward, each with its math and shapes in its first comment line.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from .. import layout
from .mathfn import vexp, vlog

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
# Small helpers are inlined at Numba's level: a function compiled on its own costs 0.1-0.3
# s of a cold first call whatever its size (docs/design.md, Compilation).
INLINE = dict(JIT, inline="always")


def array_types(dt):
    """The array types of the entry kernels' signatures, for float type dt: read-only 2-D
    and 1-D inputs (read-only and writeable arrays then share one compiled version), a
    writeable 1-D output."""
    return types.Array(dt, 2, "C", readonly=True), types.Array(dt, 1, "C", readonly=True), types.Array(dt, 1, "C")


@intrinsic
def _matrix_view(typingctx, flat, rows, cols):
    """(rows, cols) C-contiguous view of a 1-D C-contiguous array, unchecked."""
    if not (isinstance(flat, types.Array) and flat.ndim == 1 and flat.layout == "C"):
        return None

    def codegen(context, builder, sig, args):
        src = make_array(sig.args[0])(context, builder, args[0])
        dst = make_array(sig.return_type)(context, builder)
        r = context.cast(builder, args[1], sig.args[1], types.intp)
        c = context.cast(builder, args[2], sig.args[2], types.intp)
        populate_array(
            dst,
            data=src.data,
            shape=cgutils.pack_array(builder, [r, c]),
            strides=cgutils.pack_array(builder, [builder.mul(c, src.itemsize), src.itemsize]),
            itemsize=src.itemsize,
            meminfo=src.meminfo,
            parent=src.parent,
        )
        return impl_ret_borrowed(context, builder, sig.return_type, dst._getvalue())

    return flat.copy(ndim=2, layout="C")(flat, rows, cols), codegen


@njit(**JIT)
def matrix(flat, rows, cols):
    """flat (rows * cols,) as a (rows, cols) view: what flat.reshape does, without the
    general reshape's helper call (~50 ns, which the tiny batches pay many times)."""
    if rows < 0 or cols < 0 or rows * cols != flat.shape[0]:
        raise ValueError("matrix: flat has the wrong size")
    return _matrix_view(flat, rows, cols)


# The layout's one definition (twolayer/layout.py), compiled for use inside kernels.
param_offsets = njit(layout.param_offsets)
hidden_units = njit(layout.hidden_units)


@njit(**INLINE)  # as a call it cost ~0.05 us of the 2 us N = 1 call
def param_views(params, Dx, H, Dy):
    """W1 (Dx, H), b1 (H,), W2 (H, Dy), b2 (Dy,) as views of the flat params (P,)."""
    o_W1, o_b1, o_W2, o_b2, end = param_offsets(Dx, H, Dy)
    return (
        matrix(params[o_W1:o_b1], Dx, H),
        params[o_b1:o_W2],
        matrix(params[o_W2:o_b2], H, Dy),
        params[o_b2:end],
    )


def function_at(context, builder, fnty, address):
    """In an intrinsic's codegen: the compiled function at ``address`` (an int64 value) as a
    first-class function of type fnty, called with Numba's own convention. Unchecked."""
    fn = cgutils.create_struct_proxy(fnty)(context, builder)
    fn.c_addr = fn.py_addr = cgutils.get_null_value(cgutils.voidptr_t)
    fn.jit_addr = builder.inttoptr(address, cgutils.voidptr_t)
    return fn._getvalue()


@njit(**INLINE)
def copy_into(dst, src):
    # dst (n,) = src (n,). A slice assignment from an array makes Numba compile its
    # shape-mismatch message (string formatting, about 2.5 s of a cold first call).
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@njit(**JIT)
def softmax_xent_row(z, y):
    # z (Dy,) logits, y (Dy,) labels -> returns the row's cost; z becomes d1 = yhat * sum(y) - y
    zmax = z[0]
    for k in range(1, z.shape[0]):
        zmax = max(zmax, z[k])
    sumexp = z.dtype.type(0.0)
    ysum = z.dtype.type(0.0)
    yshift = z.dtype.type(0.0)
    for k in range(z.shape[0]):
        s = z[k] - zmax
        ysum += y[k]
        yshift += y[k] * s
        e = vexp(s)
        sumexp += e
        z[k] = e
    scale = ysum / sumexp
    for k in range(z.shape[0]):
        z[k] = z[k] * scale - y[k]
    return ysum * vlog(sumexp) - yshift  # sum_k y_k (lse - z_k); see softmax_xent_columns


@intrinsic
def _transpose8x8(typingctx, src, s_at, s_stride, dst, d_at, d_stride):
    """dst.flat[d_at + j d_stride + i] = src.flat[s_at + i s_stride + j] for i, j < 8:
    eight rows loaded as vectors, transposed in registers by three rounds of shuffles,
    stored as eight vectors. Unchecked: both blocks must lie inside their arrays."""
    if not (
        isinstance(src, types.Array)
        and isinstance(dst, types.Array)
        and src.dtype == dst.dtype
        and src.layout == dst.layout == "C"
    ):
        return None

    def codegen(context, builder, sig, args):
        s_data = make_array(sig.args[0])(context, builder, args[0]).data
        d_data = make_array(sig.args[3])(context, builder, args[3]).data
        _, s_at, s_stride, _, d_at, d_stride = args
        elem = context.get_value_type(sig.args[0].dtype)
        vec = ir.VectorType(elem, 8)
        align = context.get_abi_sizeof(elem)

        def at(data, start, stride, i):
            ptr = builder.gep(data, [builder.add(start, builder.mul(stride, stride.type(i)))])
            return builder.bitcast(ptr, vec.as_pointer())

        def shuffle(a, b, lanes):
            return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), lanes))

        r = [builder.load(at(s_data, s_at, s_stride, i), align=align) for i in range(8)]
        # pairs of rows interleaved: p[2k] holds columns 0, 2, 4, 6 of rows 2k, 2k+1
        p = []
        for k in range(0, 8, 2):
            p += [
                shuffle(r[k], r[k + 1], [0, 8, 2, 10, 4, 12, 6, 14]),
                shuffle(r[k], r[k + 1], [1, 9, 3, 11, 5, 13, 7, 15]),
            ]
        # quads: q[(h, c)] holds columns c and c + 4 of rows 4h..4h+3
        q = {}
        for h in (0, 1):
            e0, o0, e1, o1 = p[4 * h : 4 * h + 4]
            q[h, 0], q[h, 2] = (
                shuffle(e0, e1, [0, 1, 8, 9, 4, 5, 12, 13]),
                shuffle(e0, e1, [2, 3, 10, 11, 6, 7, 14, 15]),
            )
            q[h, 1], q[h, 3] = (
                shuffle(o0, o1, [0, 1, 8, 9, 4, 5, 12, 13]),
                shuffle(o0, o1, [2, 3, 10, 11, 6, 7, 14, 15]),
            )
        for c in range(4):
            builder.store(
                shuffle(q[0, c], q[1, c], [0, 1, 2, 3, 8, 9, 10, 11]), at(d_data, d_at, d_stride, c), align=align
            )
            builder.store(
                shuffle(q[0, c], q[1, c], [4, 5, 6, 7, 12, 13, 14, 15]), at(d_data, d_at, d_stride, c + 4), align=align
            )
        return context.get_dummy_value()

    return types.none(src, types.intp, types.intp, dst, types.intp, types.intp), codegen


@njit(**JIT)
def pack_tile(src, r0, n, dst):
    # src (N, D) rows r0..r0+n -> dst (D, T); columns n..T zeroed (zero rows add nothing).
    # With D >= 8, blocks of 8 rows x 8 columns go through registers (the last block of
    # columns overlaps the one before when 8 does not divide D): (N, 10) float64 packed
    # at 3.1 ns per row instead of 4.9 element by element.
    D, T = src.shape[1], dst.shape[1]
    n8 = n - n % 8 if D >= 8 else 0
    for t in range(0, n8, 8):
        for d in range(0, D - 7, 8):
            _transpose8x8(src, (r0 + t) * D + d, D, dst, d * T + t, T)
        if D % 8:
            _transpose8x8(src, (r0 + t) * D + D - 8, D, dst, (D - 8) * T + t, T)
    for t in range(n8, n):
        for d in range(D):
            dst[d, t] = src[r0 + t, d]
    dst[:, n:T] = 0


@intrinsic
def _prefetch(typingctx, src, i):
    """Hint the cache line holding element i (in memory order) of a C-contiguous array into
    the caches (llvm.prefetch: read, locality 2 of 3); a hint never faults."""
    if not (isinstance(src, types.Array) and src.layout == "C" and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = builder.gep(make_array(sig.args[0])(context, builder, args[0]).data, [args[1]])
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]), "llvm.prefetch.p0"
        )
        builder.call(fn, [ptr, i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return types.none(src, types.intp), codegen


@njit(**JIT)
def prefetch_rows(src, r0, r1):
    # src (N, D) C-contiguous: one hint per 64-byte line of rows r0..r1
    for e in range(r0 * src.shape[1], r1 * src.shape[1], 64 // src.itemsize):
        _prefetch(src, e)


@njit(**JIT)
def softmax_xent_columns(zT, yT, rows):
    # zT (Dy, T) logits, yT (Dy, T) labels, one example per column -> returns their cost;
    # zT becomes d1 = yhat * rowsum(y) - y. rows (4, T) is scratch. Every loop runs over
    # the T columns, so it vectorizes however small Dy is.
    T = zT.shape[1]
    zmax, sumexp, ysum, yshift = rows[0], rows[1], rows[2], rows[3]
    copy_into(zmax, zT[0])
    for k in range(1, zT.shape[0]):
        z = zT[k]
        for t in range(T):
            zmax[t] = max(zmax[t], z[t])
    # One exp per logit: s = z - max is exact, and cost = sum_k y_k (lse - z_k)
    # = rowsum(y) log(sum_k exp(s_k)) - sum_k y_k s_k stays finite where yhat underflows.
    sumexp[:] = 0
    ysum[:] = 0
    yshift[:] = 0
    for k in range(zT.shape[0]):
        z = zT[k]
        y = yT[k]
        for t in range(T):
            s = z[t] - zmax[t]
            ysum[t] += y[t]
            yshift[t] += y[t] * s
            e = vexp(s)
            sumexp[t] += e
            z[t] = e
    cost = zT.dtype.type(0.0)
    for t in range(T):
        cost += ysum[t] * vlog(sumexp[t]) - yshift[t]
        sumexp[t] = ysum[t] / sumexp[t]  # now yhat * rowsum(y) = e * sumexp
    for k in range(zT.shape[0]):
        z = zT[k]
        y = yT[k]
        for t in range(T):
            z[t] = z[t] * sumexp[t] - y[t]
    return cost


# A chunked kernel gets one flat workspace ws:
#   [gradient accumulators, P per chunk | scratch, one region per block (thread)]
# Chunk 0 accumulates straight into grad, so its accumulator goes unused; the others are
# added to grad in chunk order. Scratch belongs to a block, not a chunk, so that the
# chunks a thread runs one after another reuse one region that stays in L1/L2.


@njit(**INLINE)
def chunk_accumulator(c, ws, grad):
    """The gradient accumulator (P,) of chunk c; the chunk initializes it."""
    P = grad.shape[0]
    return grad if c == 0 else ws[c * P : (c + 1) * P]


@njit(**INLINE)
def block_scratch(b, ws, chunks, P, size):
    """The scratch (size,) of block b, after the accumulators of all chunks."""
    start = chunks * P + b * size
    return ws[start : start + size]


@njit(**INLINE)
def chunk_rows(c, rows_per_chunk, n):
    """Rows r0..r1 of chunk c of a batch of n rows."""
    r0 = c * rows_per_chunk
    return r0, min(n, r0 + rows_per_chunk)


@njit(**INLINE)
def reduce_slice(s, slices, ws, chunks, grad):
    """Slice s of ``slices`` equal slices of grad += the accumulators of chunks 1.., in
    chunk order: each element is summed in the same order however the slices are shared
    out, so slices may run on different threads, and results are bitwise the same for
    any thread count."""
    P = grad.shape[0]
    per = -(-P // slices)
    a, b = s * per, min(P, (s + 1) * per)
    g = grad[a:b]
    for c in range(1, chunks):
        acc = ws[c * P + a : c * P + b]
        for p in range(g.shape[0]):
            g[p] += acc[p]


@njit(**INLINE)
def sum_costs(costs):
    cost = 0.0
    for c in range(costs.shape[0]):
        cost += costs[c]
    return cost
