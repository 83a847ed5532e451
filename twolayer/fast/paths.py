"""Which kernel runs a call, and how a batch is cut: from N, the layer sizes and the float
size only, never from the thread count, so that results never depend on it.

Paths (kernels/):
  row       single.py    one row at a time; the tiniest batches, where the call is the
                         cost, and a few rows when W1 is too big for the cache
  tile      narrow.py    one transposed tile, no threads; small batches of narrow layers
  narrow    narrow.py    fixed chunks of tiles over our pool's threads; narrow layers
  blas      wide.py      NumPy's OpenBLAS for the products, called single-threaded on
                         fixed chunks over our pool's threads; wider layers
  portable  portable.py  the products through NumPy (any BLAS, its own threads), the
                         elementwise stages fused in between; wider layers where NumPy's
                         BLAS cannot be bound

Tile, chunk and block are defined in kernels/common.py.
"""

import math

from ..kernels import narrow
from ..layout import flop_count, param_offsets

PATHS = ("row", "tile", "narrow", "blas", "portable")

# Chunks of the narrow path: large enough to balance 2..64 threads, while their
# accumulators take at most ACCUMULATOR_BYTES (a wide layer on the narrow path, where
# NumPy's BLAS is slower than it: fallback.py).
NARROW_CHUNKS = 64
# Chunks of the BLAS path: a power of two (whole chunks per thread for 2, 4, 8 ... threads)
# near sqrt(N / 128), two at least from 32 rows: each chunk streams the weights again and
# adds an accumulator pass over P, so fewer chunks were faster ((784, 128, 10) N = 256:
# 2 chunks 0.93 of the time of 4, N = 1024 0.95 with 2 against 8; 2 chunks at N = 64,
# 4 at 4096, 16 at 65536, 64 from 2^19 rows); whose accumulators take at most
# ACCUMULATOR_BYTES: the chunked paths' memory bound beyond their tiles' scratch.
BLAS_MAX_CHUNKS = 64
ACCUMULATOR_BYTES = 48 << 20
# Rows per tile of the BLAS path, by W1 beyond the cache (blas_chunks).
BLAS_TILE_ROWS = {False: 128, True: 256}
# Weights in W1 from which it no longer stays in cache between the products of a call.
W1_BEYOND_CACHE = 1 << 18
# Rows up to which the row path beats the column split, for a W1 of COLUMNS_MIN_WEIGHTS or
# more, by W1 beyond the cache (W1_BEYOND_CACHE) and itemsize; on OpenBLAS's packed GEMM
# and on the direct kernels (numpy_blas). Where W1 fits the cache, the row kernel streams
# the weights once per row from L2, on one thread ((784, 128, 10)); the direct kernels
# pack nothing and beat it from two rows (float64 N = 2: 33 against 37 us, N = 3: 37
# against 54; packed, N = 2 took 88 us). Beyond the cache, a few rows are the weights'
# trip through memory, and the row path runs rows_split, which shares it out over the
# threads ((1024^3), `python dev/ab_paths.py wide DTYPE 4,5,6,8 numpy,base,
# ROW_MAX_ROWS_DIRECT=8`, NumPy's time over ours, row path / column split, over runs of
# 2026-12-01 on pip's OpenBLAS and Debian's): rows_split's time held within 15% from run
# to run (float64 1.18-1.35 ms at N = 4), the split's moved with the VM (1.17-2.58 ms).
# Direct kernels, float64: N = 2 1.84-3.17x / 1.03-1.48x, N = 4 1.71-1.93x / 0.91-2.08x,
# N = 6 1.55-1.95x / 1.14-1.81x, N = 8 1.18-1.68x / 1.23-2.08x; float32 N = 4 1.57-2.80x
# / 1.42-2.05x, N = 6 1.78-2.02x / 1.42-2.12x, N = 8 0.91-1.58x / 1.08-1.33x. Packed
# (TWOLAYER_BLAS=cblas): N = 6 float64 1.51-1.55x / 1.21-1.25x, N = 8 1.22x / 1.26x;
# float32 N = 6 1.77-2.07x / 1.26-1.51x, N = 8 0.82x / 0.97x. Up to 6 rows on both.
ROW_MAX_ROWS = {False: {4: 3, 8: 3}, True: {4: 6, 8: 6}}
ROW_MAX_ROWS_DIRECT = {False: {4: 1, 8: 1}, True: {4: 6, 8: 6}}
# Rows up to which the row kernel beats one tile on narrow layers: a tile costs about 250
# short loops for (10, 5, 10) whatever its rows (N = 2: 1.11 against 1.52 us).
NARROW_ROW_MAX_ROWS = 2
# Workspace of one tile of the portable path (its products run on the BLAS's threads, so
# a tile need not stay in L2; bigger tiles make fewer calls from Python): 8 MiB, or four
# gradients' worth where that is more, so that adding each tile's gradient to the total
# stays a small part of the tile's work ((1024, 1024, 1024) float64 N = 1024 in tiles of
# 256 rows: 0.91x NumPy's time).
PORTABLE_TILE_BYTES = 8 << 20


def choose_path(n, Dx, H, Dy, itemsize=8, direct_gemm=False):
    """The kernel for n rows of a (Dx, H, Dy) network of ``itemsize``-byte floats
    (crossovers measured on 2 cores): "row", "tile", "narrow" or "blas" (which runs as
    "portable" where NumPy's BLAS cannot be bound). ``direct_gemm``: whether the BLAS
    path's products run on the direct kernels, or a function that says so
    (numpy_blas.direct_gemm, which binds the BLAS): called only for a big W1.

    Narrow layers (Dx H + H Dy <= 256) take the transposed tiles: a tile's work is a
    handful of vector operations per weight, while each BLAS call costs a microsecond or
    more; from (10, 20, 10) on, BLAS wins; but one or two rows take the row kernel, since
    a tile costs a few hundred short loops whatever its rows. A big W1 keeps the row
    kernel for a few rows (ROW_MAX_ROWS), on the direct kernels for one row at most.
    """
    if Dx * H + H * Dy <= 256:
        if n <= NARROW_ROW_MAX_ROWS:
            return "row"
        return "tile" if n < 512 else "narrow"
    if n == 0:
        return "row"
    if Dx * H >= COLUMNS_MIN_WEIGHTS:
        direct = direct_gemm() if callable(direct_gemm) else direct_gemm
        rows = ROW_MAX_ROWS_DIRECT if direct else ROW_MAX_ROWS
        return "row" if n <= rows[Dx * H >= W1_BEYOND_CACHE][itemsize] else "blas"
    return "row" if n <= 1 else "blas"


def narrow_chunks(n, Dx, H, Dy, itemsize):
    """(rows per tile, rows per chunk, chunks) of the narrow path: whole tiles per chunk."""
    T = narrow.tile_rows(Dx, H, Dy, itemsize)
    most = min(NARROW_CHUNKS, max(1, ACCUMULATOR_BYTES // (param_offsets(Dx, H, Dy)[-1] * itemsize)))
    per_chunk = max(1, -(-n // (T * most))) * T
    return T, per_chunk, max(1, -(-n // per_chunk))


def blas_chunks(n, Dx, H, Dy, itemsize):
    """(rows per tile, rows per chunk, chunks) of the BLAS path. Tiles of 128 rows keep a
    chunk's activations in L2 between the GEMMs (the best of 64-1024 on (50, 100, 5) and
    (784, 128, 10)); a W1 beyond the cache does better with 256."""
    P = param_offsets(Dx, H, Dy)[-1]
    wanted = max(min(2, n // 16), math.isqrt(n // 128), 1)
    chunks = min(BLAS_MAX_CHUNKS, wanted, max(1, ACCUMULATOR_BYTES // (P * itemsize)))
    chunks = 1 << (chunks.bit_length() - 1)  # a power of two, rounded down
    per_chunk = -(-n // chunks)
    R = BLAS_TILE_ROWS[Dx * H >= W1_BEYOND_CACHE]
    return min(R, max(1, per_chunk)), max(1, per_chunk), chunks


# Small batches on a W1 of COLUMNS_MIN_WEIGHTS or more are split by columns of the weights
# instead of by rows (kernels/wide.py, wide_columns_*): each thread streams only its share
# of the weights, and nothing needs an accumulator. Below 32 rows there is only one chunk;
# from there two chunks of rows won or tied for (784, 128, 10) (NumPy's time over ours,
# split / chunked: float32 N = 32 1.93x / 1.90x, N = 64 2.20x / 2.15x; float64 N = 40
# 1.83x / 1.71x, N = 64 1.68x / 1.78x; OpenBLAS's own GEMM, float64 N = 64 0.88x / 1.18x):
# they wait for the threads once per call, the split four times; a W1 beyond the cache, which
# every chunk streams again, keeps it longer ((1024^3) float64 N = 192: 1.00x, 0.98x;
# 384: 0.96x, 1.02x; float32 N = 128: 1.04x, 1.00x; docs/design.md). Blocks of
# COLUMN_BLOCK_COLUMNS columns, two at least, by the GEMM that runs a block's products.
# On the direct kernels, which pack nothing, 128 ((1024^3) on a Zen 5, 64 / 128 / 256
# columns: float64 N = 64 1.08x / 1.12x / 1.11x; float32 N = 16 0.95x / 1.06x / 1.09x,
# N = 64 0.95x / 1.02x / 1.04x) leave 8 blocks of a 1024-wide layer for up to 8 threads.
# OpenBLAS's packed GEMM packs x again for every block and zeroes C before a first tile:
# on a Xeon (SkylakeX kernels, `python dev/ab_paths.py wide DTYPE 8,16,32,64,128
# numpy,base,COLUMN_BLOCK_COLUMNS=256,COLUMN_BLOCK_COLUMNS=512`, 2026-12-01) 128 / 256 /
# 512 columns gave float64 0.81-0.89x / 0.94-1.07x / 1.01-1.10x NumPy's speed, float32
# 0.90-0.99x / 0.99-1.09x / 1.03-1.12x. Tiles of
COLUMNS_MIN_WEIGHTS = 1 << 15
COLUMNS_MAX_ROWS = {4: 31, 8: 31}
COLUMNS_MAX_ROWS_BEYOND_CACHE = {4: 128, 8: 192}
COLUMN_BLOCK_COLUMNS = {"direct": 128, "packed": 512}
COLUMNS_TILE_ROWS = 256


def blas_columns(n, Dx, H, Dy, itemsize, packed_from=0):
    """(rows per tile, hidden units per block, outputs per block) of the column split, or
    None where the batch is cut into chunks of rows instead. ``packed_from``: the layer
    width (the row length of its weights) from which its products run on OpenBLAS's packed
    GEMM rather than on the direct kernels (numpy_blas.packed_from)."""
    if Dx * H < COLUMNS_MIN_WEIGHTS:
        return None
    rows = COLUMNS_MAX_ROWS_BEYOND_CACHE if Dx * H >= W1_BEYOND_CACHE else COLUMNS_MAX_ROWS
    if n > rows[itemsize] and blas_chunks(n, Dx, H, Dy, itemsize)[2] > 1:
        return None

    def block(width):
        most = COLUMN_BLOCK_COLUMNS["packed" if width >= packed_from else "direct"]
        return max(16, min(most, width // 2))

    return min(max(1, n), COLUMNS_TILE_ROWS), block(H), block(Dy)


# Calls of fewer FLOPs than this, by itemsize, run the column split on one thread: its four
# stages each wait for both threads, which can cost more than the second thread saves. On
# this VM that cost changed from minute to minute ((784, 128, 10), one thread / two, two
# runs: float64 N = 4 35 / 32 us, N = 8 45 / 55 and 53 / 42; float32 N = 4 18 / 45 and
# 20 / 33, N = 8 28 / 40 and 30 / 36, N = 16 47 / 64 and 48 / 40): one thread up to where
# it won in both. The chunked path starts its threads once per call, and gains from a
# second thread at far fewer FLOPs.
COLUMNS_THREADED_MIN_FLOPS = {4: 4_000_000, 8: 2_000_000}


def columns_threaded(n, Dx, H, Dy, itemsize):
    """Whether the column split of n rows runs on Numba's threads (else on one: the same
    blocks in the same order, so the same result)."""
    return flop_count(n, (Dx, H, Dy)) >= COLUMNS_THREADED_MIN_FLOPS[itemsize]


def portable_tile_rows(n, Dx, H, Dy, itemsize):
    """Rows per tile of the portable path: the whole batch while its workspace stays
    within budget (PORTABLE_TILE_BYTES), else the fewest equal tiles that do (at least
    64 rows)."""
    per_row = (2 * H + 2 * Dy + 4) * itemsize
    budget = max(PORTABLE_TILE_BYTES, 4 * param_offsets(Dx, H, Dy)[-1] * itemsize)
    tiles = max(1, -(-(n * per_row) // budget))
    return max(min(n, 64), -(-n // tiles))
