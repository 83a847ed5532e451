"""twolayer: the fastest CPU forward and backward pass of a two-layer sigmoid network.

``forward_backward_prop`` has the signature of CS224n assignment 1 (``q2_neural.py``).
"""

from .api import BACKENDS, forward_backward_prop, get_num_threads, resolve_backend, set_num_threads
from .helpers import gradcheck_naive, sanity_check, sigmoid, sigmoid_grad, softmax
from .layout import SHAPES, flop_count, pack_params, param_count, unpack_params

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "SHAPES",
    "flop_count",
    "forward_backward_prop",
    "get_num_threads",
    "gradcheck_naive",
    "pack_params",
    "param_count",
    "resolve_backend",
    "sanity_check",
    "set_num_threads",
    "sigmoid",
    "sigmoid_grad",
    "softmax",
    "unpack_params",
]
