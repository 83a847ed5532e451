"""Peers computing the same function, for the benchmarks: the assignment's own NumPy
code as students write it (``textbook``, always there), and two optional ones, PyTorch
eager autograd and JAX jit(value_and_grad). Neither of those is a dependency;
``available()`` says which are installed. Each factory returns ``f(data, labels, params)
-> (cost, grad)`` with NumPy in and out, so that conversions are part of what is timed,
as they are for a user who has NumPy arrays."""

import importlib.util

from .layout import param_offsets

OPTIONAL = ("torch", "jax")
PEERS = ("textbook", *OPTIONAL)
INSTALL = {"torch": "pip install torch==2.13.0  (a CPU build)", "jax": "pip install jax jaxlib"}


def available():
    """The installed optional peers (``textbook`` is always there, and only run on request)."""
    return [name for name in OPTIONAL if importlib.util.find_spec(name) is not None]


def require(name):
    if name not in PEERS:
        raise ValueError(f"peer: expected one of {', '.join(PEERS)}, got {name!r}")
    if name in OPTIONAL and importlib.util.find_spec(name) is None:
        raise ImportError(f"the {name} peer is not installed; install it with: {INSTALL[name]}")


def make(name, dims, dtype):
    """``f(data, labels, params) -> (cost, grad)`` computed by peer ``name``."""
    require(name)
    return {"textbook": _make_textbook, "torch": _make_torch, "jax": _make_jax}[name](tuple(dims), dtype)


def _make_textbook(dims, dtype):
    """CS224n's q2_neural.py as the notebook has it (../shared/seed): its unpacking, the
    q1/q2 softmax and sigmoid, cost over the one-hot entries; what a drop-in user had
    before. One-hot labels only, as there."""
    import numpy as np

    Dx, H, Dy = dims

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    def softmax(x):
        x = x - np.max(x, axis=1, keepdims=True)
        e = np.exp(x)
        return e / np.sum(e, axis=1, keepdims=True)

    def f(data, labels, params):
        ofs = 0
        W1 = np.reshape(params[ofs : ofs + Dx * H], (Dx, H))
        ofs += Dx * H
        b1 = np.reshape(params[ofs : ofs + H], (1, H))
        ofs += H
        W2 = np.reshape(params[ofs : ofs + H * Dy], (H, Dy))
        ofs += H * Dy
        b2 = np.reshape(params[ofs : ofs + Dy], (1, Dy))
        h = sigmoid(np.dot(data, W1) + b1)
        yhat = softmax(np.dot(h, W2) + b2)
        cost = np.sum(-np.log(yhat[labels == 1]))
        d1 = yhat - labels
        d2 = np.dot(d1, W2.T)
        d3 = d2 * h * (1 - h)
        gradW1 = np.dot(data.T, d3)
        gradb1 = np.sum(d3, axis=0)
        gradW2 = np.dot(h.T, d1)
        gradb2 = np.sum(d1, axis=0)
        return float(cost), np.concatenate((gradW1.flatten(), gradb1.flatten(), gradW2.flatten(), gradb2.flatten()))

    return f


def _make_torch(dims, dtype):
    import torch

    Dx, H, Dy = dims
    o_W1, o_b1, o_W2, o_b2, end = param_offsets(Dx, H, Dy)

    def f(data, labels, params):
        p = torch.from_numpy(params).detach().clone().requires_grad_(True)
        x = torch.from_numpy(data)
        y = torch.from_numpy(labels)
        W1 = p[o_W1:o_b1].view(Dx, H)
        W2 = p[o_W2:o_b2].view(H, Dy)
        h = torch.sigmoid(x @ W1 + p[o_b1:o_W2])
        # cross_entropy with class probabilities as the target: -sum(y * log_softmax(z))
        cost = torch.nn.functional.cross_entropy(h @ W2 + p[o_b2:end], y, reduction="sum")
        cost.backward()
        return float(cost.detach()), p.grad.numpy()

    return f


def _make_jax(dims, dtype):
    import jax
    import numpy as np

    if np.dtype(dtype) == np.float64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    Dx, H, Dy = dims
    o_W1, o_b1, o_W2, o_b2, end = param_offsets(Dx, H, Dy)

    def cost_fn(p, x, y):
        h = jax.nn.sigmoid(x @ p[o_W1:o_b1].reshape(Dx, H) + p[o_b1:o_W2])
        z = h @ p[o_W2:o_b2].reshape(H, Dy) + p[o_b2:end]
        return -jnp.sum(y * jax.nn.log_softmax(z, axis=1))

    step = jax.jit(jax.value_and_grad(cost_fn))

    def f(data, labels, params):
        cost, grad = step(params, data, labels)
        return float(cost), np.asarray(grad)

    return f
