"""The portable path's elementwise stages: entry kernels called between products that
NumPy issues (twolayer/fast/portable.py), so that they run on whatever BLAS NumPy was
built with, on that BLAS's own threads. Each stage is the BLAS path's (kernels/wide.py)
without its GEMMs; each call sets the bias gradient it computes (the caller adds the
tiles up in order).
"""

from numba import njit

from .common import ENTRY, pack_tile
from .wide import (
    fill_bias_tile,
    sigmoid_backward,
    sigmoid_of_biased,
    softmax_xent_columns_biased,
    softmax_xent_rows_biased,
)


@njit(**ENTRY)
def hidden_forward_tail(h_flat, b1, bias_tile):
    # h_flat (n * H,) = x W1, flattened -> h = sigmoid(x W1 + b1) in place; bias_tile scratch
    fill_bias_tile(b1, bias_tile)
    sigmoid_of_biased(h_flat, bias_tile)


@njit(**ENTRY)
def output_forward_tail_columns(zT, b2, labels, r0, yT, rows, gb2):
    # zT (Dy, n) = (h W2)^T, labels rows r0..r0+n -> returns the cost; zT becomes d1^T,
    # gb2 (Dy,) = sum_rows(d1). yT (Dy, n) and rows (4, n) scratch.
    pack_tile(labels, r0, zT.shape[1], yT)
    gb2[:] = 0
    return softmax_xent_columns_biased(zT, b2, yT, rows, gb2)


@njit(**ENTRY)
def output_forward_tail_rows(z, b2, labels, r0, gb2):
    # z (n, Dy) = h W2 -> returns the cost; z becomes d1, gb2 (Dy,) = sum_rows(d1)
    gb2[:] = 0
    return softmax_xent_rows_biased(z, b2, labels[r0 : r0 + z.shape[0]], gb2)


@njit(**ENTRY)
def hidden_backward_head(d, h, gb1):
    # d (n, H) = d2 -> d3 = d2 * h * (1 - h) in place; gb1 (H,) = sum_rows(d3)
    gb1[:] = 0
    sigmoid_backward(d, h, gb1)


@njit(**ENTRY)
def add_into(total, part):
    # total (P,) += part (P,): tiles summed in order, whatever the thread count
    for p in range(total.shape[0]):
        total[p] += part[p]
