"""Optional peers computing the same function, for the benchmarks: PyTorch eager
autograd and JAX jit(value_and_grad). Neither is a dependency; ``available()`` says
which are installed. Each factory returns ``f(data, labels, params) -> (cost, grad)``
with NumPy in and out, so that conversions are part of what is timed, as they are
for a user who has NumPy arrays."""
import importlib.util

from .layout import param_offsets

PEERS = ("torch", "jax")
INSTALL = {"torch": "pip install torch==2.13.0  (a CPU build)", "jax": "pip install jax jaxlib"}


def available():
    """The installed peers."""
    return [name for name in PEERS if importlib.util.find_spec(name) is not None]


def require(name):
    if name not in PEERS:
        raise ValueError(f"peer: expected one of {', '.join(PEERS)}, got {name!r}")
    if importlib.util.find_spec(name) is None:
        raise ImportError(f"the {name} peer is not installed; install it with: {INSTALL[name]}")


def make(name, dims, dtype):
    """``f(data, labels, params) -> (cost, grad)`` computed by peer ``name``."""
    require(name)
    return {"torch": _make_torch, "jax": _make_jax}[name](tuple(dims), dtype)


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
        return float(cost), p.grad.numpy()

    return f


def _make_jax(dims, dtype):
    import numpy as np

    import jax

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
