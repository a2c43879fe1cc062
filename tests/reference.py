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


# --- networks of Linear, Tanh and ReLU layers (derivations/mlp.md (N1)-(N6)) ---------------------
#
# ``layers`` is a tuple of ("linear", fan_in, fan_out), ("tanh",), ("relu",) and ("sine",); ``theta`` is flat,
# each Linear's weight (fan_out, fan_in) row-major then its bias, in the order of the layers
# (PyTorch's ``parameters_to_vector``). Heads: "mse" (mean over examples and outputs of (z - y)^2,
# targets (n, q)), "logistic" (one output, labels 0/1, targets (n,)), "softmax" (labels (n,)).


def _linear_params(theta, fan_in, fan_out, offset):
    W = theta[offset:offset + fan_out * fan_in].reshape(fan_out, fan_in)
    b = theta[offset + fan_out * fan_in:offset + fan_out * (fan_in + 1)]
    return W, b, offset + fan_out * (fan_in + 1)


def _activation(kind, z):
    """``(sigma(z), sigma'(z), sigma''(z))``; ReLU's branch is that of Re z (complex steps)."""
    if kind == "sine":  # the test-only layer of tests/test_layers.py
        return np.sin(z), np.cos(z), -np.sin(z)
    if kind == "tanh":
        t = np.tanh(z)
        return t, 1 - t * t, -2 * t * (1 - t * t)
    on = (np.real(z) > 0).astype(float)
    return z * on, on, np.zeros(np.shape(z))


def network_forward(layers, theta, X):
    """Outputs ``z (n, q)`` and, for each layer, its input (complex theta allowed)."""
    a, inputs, offset = X, [], 0
    for layer in layers:
        inputs.append(a)
        if layer[0] == "linear":
            W, b, offset = _linear_params(theta, layer[1], layer[2], offset)
            a = a @ W.T + b
        else:
            a = _activation(layer[0], a)[0]
    return a, inputs


def preactivations(layers, theta, X):
    """The inputs of every ReLU layer, flattened: how far they are from 0 is how far the kinks are."""
    _, inputs = network_forward(layers, theta, X)
    parts = [np.ravel(a) for layer, a in zip(layers, inputs) if layer[0] == "relu"]
    return np.concatenate(parts) if parts else np.zeros(0)


def _targets(head, z, y):
    return y.reshape(z.shape) if head == "mse" else (y[:, None] if head == "logistic" else one_hot(y, z.shape[1]))


def network_loss(layers, head, theta, X, y, l2=0.0):
    """(N1) and the head of (H6), written from the definitions, plus (l2/2) theta . theta."""
    z, _ = network_forward(layers, theta, X)
    if head == "mse":
        data = np.mean((z - _targets(head, z, y)) ** 2)
    elif head == "logistic":
        data = loss(np.ones(1), z, y)
    else:
        data = softmax_loss(np.eye(z.shape[1]), z, y)
    return data + 0.5 * l2 * np.sum(theta * theta)


def network_grad_hvp(layers, head, theta, X, y, l2=0.0, v=None, absolute=False):
    """The gradient of :func:`network_loss` by backpropagation (N2), (N3) and, with a direction
    ``v``, ``H v`` by Pearlmutter's R-operator (N4)-(N6), written out layer by layer.

    With ``absolute=True`` every operand of every product (weights, inputs, slopes, curvatures,
    residuals, directions) is replaced by its magnitude, the residual of mse by the magnitudes of
    its terms, ``2 (|a| |W|^T + |b| + |y|) / q``: the result is the sum of the magnitudes of the
    terms of each entry, the scale of its rounding error (each entry is computed to a few ulps of
    it).  Returns ``(grad, Hv or None)``.
    """
    m = np.abs if absolute else (lambda a: a)
    n = X.shape[0]
    z, inputs = network_forward(layers, theta, X)
    target = _targets(head, z, y)
    if head == "mse":
        q = z.shape[1]
        if absolute:
            _, fan_in, fan_out = layers[-1]
            W, b, _ = _linear_params(theta, fan_in, fan_out, theta.size - fan_out * (fan_in + 1))
            r = 2 * (np.abs(inputs[-1]) @ np.abs(W).T + np.abs(b) + np.abs(target)) / q
        else:
            r = 2 * (z - target) / q
        curvature = lambda u: 2 * u / q  # noqa: E731
    else:
        P = sigmoid(z) if head == "logistic" else softmax_probabilities(z)
        r = m(P - target)
        if head == "logistic":
            curvature = lambda u: m(P * (1 - P)) * u  # noqa: E731
        elif absolute:
            curvature = lambda u: P * u + P * np.sum(P * u, axis=1, keepdims=True)  # noqa: E731
        else:
            curvature = lambda u: P * u - P * np.sum(P * u, axis=1, keepdims=True)  # noqa: E731
    # the R-forward pass: the tangents of every layer's input along v
    params, offset = [], 0
    for layer in layers:
        if layer[0] == "linear":
            W, b, end = _linear_params(theta, layer[1], layer[2], offset)
            params.append((m(W), m(b), offset, end))
            offset = end
        else:
            params.append(None)
    tangents, dot = [], None
    if v is not None:
        v = m(v)
        for layer, a, p in zip(layers, inputs, params):
            tangents.append(dot)
            if layer[0] == "linear":
                W, b, start, _ = p
                Wd, bd, _ = _linear_params(v, layer[1], layer[2], start)
                dot = m(a) @ Wd.T + bd + (0 if dot is None else dot @ W.T)
            elif dot is not None:
                dot = m(_activation(layer[0], a)[1]) * dot
    delta = r / n
    R = curvature(dot) / n if v is not None else None
    grad = np.zeros(theta.shape, dtype=np.result_type(theta, X, r))
    Hv = np.zeros(theta.shape, dtype=np.result_type(grad, R)) if v is not None else None
    for i in reversed(range(len(layers))):
        layer, a = layers[i], m(inputs[i])
        if layer[0] == "linear":
            W, b, start, end = params[i]
            grad[start:end] = np.concatenate([(delta.T @ a).ravel(), delta.sum(axis=0)])
            if v is not None:
                RW = R.T @ a + (0 if tangents[i] is None else delta.T @ tangents[i])
                Hv[start:end] = np.concatenate([np.ravel(RW), R.sum(axis=0)])
                Wd, _, _ = _linear_params(v, layer[1], layer[2], start)
                R = R @ W + delta @ Wd
            delta = delta @ W
        else:
            _, slope, curve = _activation(layer[0], inputs[i])
            if v is not None:
                R = m(slope) * R + (m(curve) * tangents[i] * delta if tangents[i] is not None else 0)
            delta = m(slope) * delta
    grad = grad + l2 * m(theta)
    return grad, (None if v is None else Hv + l2 * v)
