"""Wide layers: BLAS for the five products, fused elementwise passes between them,
a chunk of R rows at a time.

Where the time goes: the GEMMs x W1 and x^T d3, at the BLAS's speed; the elementwise
passes are a few percent. Rows are split into one block per thread, each running
whole chunks with single-threaded BLAS, so that one thread pool works at a time and
the elementwise passes run in parallel too. Chunks bound the workspace whatever N is;
the weight gradients accumulate inside the GEMM (beta = 1).
"""
from numba import njit, prange

from .blas import gemm
from .common import JIT, chunk_workspace, param_views, reduce_chunks
from .mathfn import vexp, vlog


@njit(**JIT)
def scratch_size(Dx, H, Dy, R):
    """Elements of chunk scratch: h and d (R, H), z (R, Dy)."""
    return R * (2 * H + Dy)


@njit(**JIT)
def hidden_activation(Z, b1):
    # Z (R, H) = x W1 -> h = sigmoid(Z + b1), in place
    one = Z.dtype.type(1.0)
    for r in range(Z.shape[0]):
        z = Z[r]
        for j in range(Z.shape[1]):
            z[j] = one / (one + vexp(-(z[j] + b1[j])))


@njit(**JIT)
def softmax_xent(Z, b2, Y):
    # Z (R, Dy) = h W2, Y (R, Dy) -> returns the cost; Z becomes d1 = yhat * rowsum(y) - y
    cost = 0.0
    for r in range(Z.shape[0]):
        z = Z[r]
        y = Y[r]
        zmax = z[0] + b2[0]
        for k in range(z.shape[0]):
            z[k] += b2[k]
            zmax = max(zmax, z[k])
        sumexp = Z.dtype.type(0.0)
        ysum = Z.dtype.type(0.0)
        yshift = Z.dtype.type(0.0)
        for k in range(z.shape[0]):
            s = z[k] - zmax
            ysum += y[k]
            yshift += y[k] * s
            e = vexp(s)
            sumexp += e
            z[k] = e
        cost += ysum * vlog(sumexp) - yshift  # sum_k y_k (lse - z_k), as in narrow.output_forward
        scale = ysum / sumexp
        for k in range(z.shape[0]):
            z[k] = z[k] * scale - y[k]
    return cost


@njit(**JIT)
def add_column_sums(A, out):
    # out (C,) += sum over the rows of A (R, C)
    for r in range(A.shape[0]):
        a = A[r]
        for c in range(A.shape[1]):
            out[c] += a[c]


@njit(**JIT)
def hidden_delta(D, Hh):
    # D (R, H) = d2 -> d3 = d2 * h * (1 - h), in place
    one = D.dtype.type(1.0)
    for r in range(D.shape[0]):
        d = D[r]
        h = Hh[r]
        for j in range(D.shape[1]):
            d[j] = d[j] * h[j] * (one - h[j])


@njit(**JIT)
def chunks_forward_backward(data, labels, params, Dx, H, Dy, r0, r1, R, scratch, grad):
    """Rows r0..r1 of data (N, Dx) and labels (N, Dy) in chunks of R rows; accumulates
    into grad (P,) and returns the cost. scratch holds scratch_size(Dx, H, Dy, R)."""
    W1, b1, W2, b2 = param_views(params, Dx, H, Dy)
    gW1, gb1, gW2, gb2 = param_views(grad, Dx, H, Dy)
    h_ws = scratch[: R * H].reshape((R, H))
    d_ws = scratch[R * H : 2 * R * H].reshape((R, H))
    z_ws = scratch[2 * R * H : R * (2 * H + Dy)].reshape((R, Dy))
    cost = 0.0
    for c0 in range(r0, r1, R):
        c1 = min(c0 + R, r1)
        x, y = data[c0:c1], labels[c0:c1]
        h, d, z = h_ws[: c1 - c0], d_ws[: c1 - c0], z_ws[: c1 - c0]
        # forward
        gemm(x, False, W1, False, h, 0.0)  # h = x W1
        hidden_activation(h, b1)  # h = sigmoid(x W1 + b1)
        gemm(h, False, W2, False, z, 0.0)  # z = h W2
        cost += softmax_xent(z, b2, y)  # z = d1
        # backward
        gemm(h, True, z, False, gW2, 1.0)  # gW2 += h^T d1
        add_column_sums(z, gb2)
        gemm(z, False, W2, True, d, 0.0)  # d = d2 = d1 W2^T
        hidden_delta(d, h)  # d = d3
        gemm(x, True, d, False, gW1, 1.0)  # gW1 += x^T d3
        add_column_sums(d, gb1)
    return cost


@njit(**JIT)
def _block(b, data, labels, params, Dx, H, Dy, R, rows_per_block, ws, costs, grad):
    stride = ws.shape[0] // costs.shape[0]
    acc, scratch = chunk_workspace(b, ws, stride, grad)
    r0 = b * rows_per_block
    r1 = min(data.shape[0], r0 + rows_per_block)
    costs[b] = chunks_forward_backward(data, labels, params, Dx, H, Dy, r0, r1, R, scratch, acc)


@njit(**JIT)
def wide_serial(data, labels, params, Dx, H, Dy, R, rows_per_block, ws, costs, grad):
    """data (N, Dx), labels (N, Dy), params (P,) -> grad (P,); returns the cost.

    Block b covers rows b * rows_per_block ..; ws holds len(costs) regions of
    P + scratch_size(Dx, H, Dy, R) elements. One block after another on this thread;
    BLAS may use its own threads.
    """
    for b in range(costs.shape[0]):
        _block(b, data, labels, params, Dx, H, Dy, R, rows_per_block, ws, costs, grad)
    return reduce_chunks(ws, ws.shape[0] // costs.shape[0], costs, grad)


@njit(parallel=True, **JIT)
def wide_parallel(data, labels, params, Dx, H, Dy, R, rows_per_block, ws, costs, grad):
    """The blocks of wide_serial, one per Numba thread (the caller limits BLAS to one thread)."""
    for b in prange(costs.shape[0]):
        _block(b, data, labels, params, Dx, H, Dy, R, rows_per_block, ws, costs, grad)
    return reduce_chunks(ws, ws.shape[0] // costs.shape[0], costs, grad)
