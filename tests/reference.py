"""Independent NumPy references, written from the definitions alone.

Nothing here imports refmaml.  The functions use the textbook formulas
(``1 / (1 + exp(-z))``, the softmax quotient, and their logarithms) and
accept complex parameters,
so that complex-step derivatives can be taken through them; they are meant
for the moderate logits the tests draw (``|z| < 700``).
"""

import numpy as np

COMPLEX_STEP = 1e-20


def sigmoid(t):
    return 1 / (1 + np.exp(-t))


def loss(theta, X, y, l2=0.0):
    """Mean binary cross-entropy of sigmoid(X theta) plus (l2/2)||theta||^2, one task.

    The definition -y log p - (1 - y) log(1 - p), with 1 - sigma(z) written
    sigma(-z): the form log(1 + e^z) - y z would lose the digits of a
    well-fitted example (12.000006 - 12) and so, through the complex step,
    of its gradient.
    """
    z = X @ theta
    bce = -y * np.log(sigmoid(z)) - (1 - y) * np.log(sigmoid(-z))
    return np.mean(bce) + 0.5 * l2 * np.sum(theta * theta)


def grad(theta, X, y, l2=0.0):
    z = X @ theta
    return X.T @ (sigmoid(z) - y) / X.shape[0] + l2 * theta


def softmax_probabilities(Z):
    """``p_ic = e^{z_ic} / sum_e e^{z_ie}``, written ``1 / sum_e e^{z_ie - z_ic}`` (rows of ``Z``).

    The textbook quotient with the numerator divided out: like ``1 / (1 + e^-t)``
    for the sigmoid, its complex-step derivative keeps its digits when one class
    dominates, where ``e^z / sum e^z`` would cancel.
    """
    return 1 / np.sum(np.exp(Z[..., None, :] - Z[..., :, None]), axis=-1)


def one_hot(y, C):
    return (np.asarray(y)[..., None] == np.arange(C)).astype(float)


def softmax_loss(theta, X, y, l2=0.0):
    """Mean cross-entropy plus (l2/2)||theta||^2, one task.

    ``-log p_{iy} = log sum_e e^{z_ie - z_iy} = log1p(sum_{e != y} e^{z_ie - z_iy})``: the
    quotient of the definition with the numerator divided out, the term ``e = y`` (exactly 1)
    kept apart so that a well-fitted example keeps its digits.
    """
    Z = X @ theta
    y = np.asarray(y)
    z_y = np.take_along_axis(Z, y[:, None], axis=1)
    others = np.where(one_hot(y, Z.shape[1]) == 1, 0, np.exp(Z - z_y))
    ce = np.log1p(np.sum(others, axis=1))
    return np.mean(ce) + 0.5 * l2 * np.sum(theta * theta)


def softmax_grad(theta, X, y, l2=0.0):
    P = softmax_probabilities(X @ theta)
    return X.T @ (P - one_hot(y, theta.shape[1])) / X.shape[0] + l2 * theta


def linear_loss(theta, X, y, l2=0.0):
    """Mean squared error of ``X theta`` against real targets plus (l2/2)||theta||^2, one task."""
    e = X @ theta - y
    return np.mean(e * e) + 0.5 * l2 * np.sum(theta * theta)


def linear_grad(theta, X, y, l2=0.0):
    return 2 * X.T @ (X @ theta - y) / X.shape[0] + l2 * theta


LOSS = {"logistic": loss, "softmax": softmax_loss, "linear": linear_loss}
GRAD = {"logistic": grad, "softmax": softmax_grad, "linear": linear_grad}


def adapt(theta, Xs, ys, alpha, K, l2=0.0, model="logistic"):
    """Plain gradient descent on one task's support loss."""
    for _ in range(K):
        theta = theta - alpha * GRAD[model](theta, Xs, ys, l2)
    return theta


def meta_losses(theta, Xs, ys, Xq, yq, alpha, K, l2=0.0, model="logistic"):
    """Per-task query losses after adaptation; a Python loop over tasks."""
    return np.array([LOSS[model](adapt(theta, Xs[t], ys[t], alpha, K, l2, model), Xq[t], yq[t])
                     for t in range(Xs.shape[0])])


def each_task(theta, X, y, param_ndim):
    """``(theta_t, X_t, y_t)`` for one task or each task of a stack (theta shared or per task)."""
    if X.ndim == 2:
        yield theta, X, y
        return
    for t in range(X.shape[0]):
        yield (theta[t] if theta.ndim > param_ndim else theta), X[t], y[t]


def per_task(f, theta, X, y, param_ndim):
    """``f(theta_t, X_t, y_t)`` for each task, stacked (not stacked for one task)."""
    vals = [f(*args) for args in each_task(theta, X, y, param_ndim)]
    return vals[0] if X.ndim == 2 else np.stack(vals)


def complex_step_gradient(f, x, h=COMPLEX_STEP):
    """``Im f(x + i h e_j) / h`` for every coordinate j."""
    x = np.asarray(x, dtype=complex)
    out = np.empty(x.size)
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = h
        out[j] = np.imag(f(x + 1j * e.reshape(x.shape))) / h
    return out.reshape(x.shape)


def complex_step_directional(F, x, v, h=COMPLEX_STEP):
    """``Im F(x + i h v) / h``: derivative of an array-valued ``F`` along ``v``."""
    return np.imag(F(np.asarray(x, dtype=complex) + 1j * h * v)) / h


def central_gradient(f, x):
    """Central differences with ``h_j = eps^(1/3) max(1, |x_j|)``."""
    x = np.asarray(x, dtype=float)
    out = np.empty(x.size)
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = np.cbrt(np.finfo(float).eps) * max(1.0, abs(x.flat[j]))
        e = e.reshape(x.shape)
        out[j] = (f(x + e) - f(x - e)) / (2 * e.flat[j])
    return out.reshape(x.shape)


def norm(a):
    """Euclidean norm, scaled so that tiny or huge entries neither underflow nor overflow."""
    a = np.abs(np.asarray(a)).ravel()
    top = a.max(initial=0.0)
    return 0.0 if top == 0 else top * np.sqrt(np.sum((a / top) ** 2))


def rel_err(a, b, floor=0.0):
    """``||a - b|| / max(||b||, floor, tiny)``: the relative error, with an optional scale floor."""
    a, b = np.asarray(a), np.asarray(b)
    return norm(a - b) / max(norm(b), floor, np.finfo(float).tiny)
