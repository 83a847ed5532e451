"""softmax, sigmoid, sigmoid_grad and gradcheck_naive against CS224n's published checks."""

import random
import warnings

import numpy as np
import pytest

from twolayer import gradcheck_naive, sigmoid, sigmoid_grad, softmax


def test_softmax_published_values():
    assert np.allclose(softmax(np.array([1, 2])), [0.26894142, 0.73105858], rtol=0, atol=1e-8)
    both = softmax(np.array([[1001, 1002], [3, 4]]))
    assert np.allclose(both, [[0.26894142, 0.73105858]] * 2, rtol=0, atol=1e-8)
    assert np.allclose(softmax(np.array([[-1001, -1002]])), [[0.73105858, 0.26894142]], rtol=0, atol=1e-8)


def test_softmax_rows_sum_to_one_and_keep_dtype():
    x = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32) * 50
    s = softmax(x)
    assert s.dtype == np.float32
    assert np.allclose(s.sum(axis=1), 1, atol=1e-6)


def test_softmax_rejects_3d():
    with pytest.raises(ValueError, match="x: expected a 1-D or 2-D array"):
        softmax(np.zeros((2, 2, 2)))


def test_sigmoid_published_values():
    x = np.array([[1, 2], [-1, -2]])
    f = sigmoid(x)
    assert np.allclose(f, [[0.73105858, 0.88079708], [0.26894142, 0.11920292]], rtol=0, atol=1e-8)
    g = sigmoid_grad(f)
    assert np.allclose(g, [[0.19661193, 0.10499359], [0.19661193, 0.10499359]], rtol=0, atol=1e-8)


def test_sigmoid_extremes_without_warnings():
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        s = sigmoid(np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]))
    assert s[0] == 0.0 and s[-1] == 1.0 and s[2] == 0.5
    assert s[1] == pytest.approx(np.exp(-40.0), rel=1e-14)  # no cancellation for negative inputs
    assert np.isnan(sigmoid(np.array([np.nan])))[0]


@pytest.mark.parametrize(
    "x",
    [np.array(123.456), np.random.default_rng(1).standard_normal(3), np.random.default_rng(2).standard_normal((4, 5))],
)
def test_gradcheck_passes_cs224n_quadratic(x, capsys):
    before = x.copy()
    assert gradcheck_naive(lambda x: (np.sum(x**2), x * 2), x) is True
    assert "Gradient check passed!" in capsys.readouterr().out
    assert np.array_equal(x, before)  # the caller's array is not perturbed


def test_gradcheck_catches_a_wrong_gradient(capsys):
    x = np.array([1.0, 2.0, 3.0])
    assert gradcheck_naive(lambda x: (np.sum(x**2), x * 2 + np.array([0, 1e-3, 0])), x) is False
    out = capsys.readouterr().out
    assert "Gradient check failed." in out and "index (1,)" in out


def test_gradcheck_fails_on_nan_gradient(capsys):
    assert gradcheck_naive(lambda x: (np.sum(x**2), x * np.nan), np.ones(2)) is False


def test_gradcheck_restores_random_state_before_every_call():
    # f draws from Python's random: without the restore its finite differences are noise.
    def f(x):
        r = random.random()
        return r * np.sum(x**2), r * 2 * x

    assert gradcheck_naive(f, np.array([0.5, -1.5]), verbose=False) is True


def test_gradcheck_rejects_gradient_of_wrong_shape():
    with pytest.raises(ValueError, match=r"f: expected a gradient of shape \(3,\)"):
        gradcheck_naive(lambda x: (0.0, np.zeros(2)), np.zeros(3))
