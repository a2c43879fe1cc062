"""What the seed tutorial computes, transcribed exactly, errors included.

The tutorial audited in ``derivations/seed-errata.md`` derives a gradient in
its section 4.2 and lists PyTorch code in its section 5.3. This module
writes both down as they stand, so that ``refmaml.audit`` can compare them
with the correct results. Nothing here is meant for use as MAML: these
functions reproduce the tutorial's mistakes on purpose.

The inputs are NumPy arrays in float64 (complex where a complex-step check
differentiates through them); the audit builds its own instances.
"""

from dataclasses import dataclass

import numpy as np

from . import special
from .models import softmax

OUTPUTS = ("linear", "sigmoid")
GRADIENT_LINES = (1, 2, 3)


def output(theta, X, f):
    """The tutorial's ``f_theta(x)`` for every row of ``X``, shape ``(n,)``.

    ``f="linear"`` is the model its section 4.1 states, ``theta^T x``;
    ``f="sigmoid"`` is ``sigmoid(theta^T x)``, the model its cross-entropy
    needs (``derivations/logistic.md`` (L1)).
    """
    z = X @ theta
    if f == "linear":
        return z
    if f == "sigmoid":
        return special.sigmoid(z)
    raise ValueError(f"f must be one of {OUTPUTS}; got {f!r}")


def output_gradient(theta, X, f):
    """Rows ``grad_theta f_theta(x_i)``, shape ``(n, d)``: ``x_i`` for the linear
    model, ``f (1 - f) x_i`` for the sigmoid model (``derivations/logistic.md`` (L3))."""
    if f == "linear":
        return X
    p = output(theta, X, f)
    return (p * (1 - p))[:, None] * X


def cross_entropy(theta, X, y, f):
    """The loss of the tutorial's section 4.1, literally:
    ``-mean(y log f + (1 - y) log(1 - f))`` (``derivations/seed-errata.md`` (E1)).

    With ``f="linear"`` it is defined only where every ``theta^T x_i`` lies in
    ``(0, 1)``; elsewhere NumPy returns NaN, which is the point the audit makes.
    """
    p = output(theta, X, f)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def gradient_line(theta, X, y, *, line, f):
    """The tutorial's gradient of section 4.2, line 1, 2 or 3, evaluated for model ``f``.

    * line 1: ``-mean[(y/f) grad f - (1-y)/(1-f) grad(1 - f)]``, with ``grad(1 - f) = -grad f``
      (the sign error; the correct line is ``derivations/seed-errata.md`` (E2));
    * line 2: ``-mean[(y/f - (1-y)/(1-f)) x]``, the literal ``x`` standing for ``grad f``;
    * line 3: ``-mean[(y - f) x]``, the "simplified" form, which is (L4) of
      ``derivations/logistic.md``, the sigmoid model's gradient (E4).

    Shape ``(d,)``.
    """
    p = output(theta, X, f)
    if line == 1:
        dp = output_gradient(theta, X, f)
        terms = (y / p)[:, None] * dp - ((1 - y) / (1 - p))[:, None] * (-dp)
    elif line == 2:
        terms = (y / p - (1 - y) / (1 - p))[:, None] * X
    elif line == 3:
        terms = (y - p)[:, None] * X
    else:
        raise ValueError(f"line must be one of {GRADIENT_LINES}; got {line!r}")
    return -np.mean(terms, axis=0)


def linear_model_gradient(theta, X, y):
    """The true gradient of the loss (E1) for the linear model, ``-mean[(y - f) / (f (1 - f)) x]``
    (``derivations/seed-errata.md`` (E3))."""
    p = X @ theta
    return -np.mean(((y - p) / (p * (1 - p)))[:, None] * X, axis=0)


# --- section 5.3: the PyTorch listing --------------------------------------------------------

@dataclass(frozen=True)
class CodeStep:
    """One iteration of the tutorial's ``maml()`` loop, as its arrays evolve.

    ``theta`` is the parameter matrix after ``optimizer.step()``; ``trajectory``
    holds the parameters after each task's inner step ``theta_1 .. theta_N``;
    ``support_grads`` the support gradients ``g_j`` and ``query_grads`` the query
    gradients ``h_j`` that ``backward()`` added to the ``.grad`` buffer;
    ``printed`` is the number the listing prints, ``meta_loss.item() / meta_batch_size``.
    """

    theta: np.ndarray
    trajectory: list
    support_grads: list
    query_grads: list
    printed: float


def with_bias_column(X):
    """``[X, 1]``: ``nn.Linear``'s bias as the last row of ``theta`` (an assumption of the audit)."""
    return np.concatenate([X, np.ones(X.shape[:-1] + (1,), dtype=X.dtype)], axis=-1)


def first_batches(X, y, *, batch_size, count, shuffle, rng):
    """``[next(iter(loader)) for _ in range(count)]`` for ``DataLoader(TensorDataset(X, y),
    batch_size=batch_size, shuffle=shuffle)``.

    Every ``iter(loader)`` starts a new pass over the data: without shuffling
    its first batch is always the first ``batch_size`` rows; with shuffling
    it is the first ``batch_size`` rows of a fresh random permutation (drawn
    here from ``rng``). Returns a list of ``count`` pairs ``(X_batch, y_batch)``.
    """
    n = X.shape[0]
    out = []
    for _ in range(count):
        rows = rng.permutation(n)[:batch_size] if shuffle else np.arange(min(batch_size, n))
        out.append((X[rows], y[rows]))
    return out


def code_step(theta, support, query, *, inner_lr, outer_lr):
    """One iteration of the tutorial's ``maml()`` on the softmax model, as the listing runs it.

    ``theta (d, C)`` holds ``nn.Linear``'s weight and bias (``with_bias_column``);
    ``support`` and ``query`` are lists of ``(X, y)`` batches, the ``meta_train_data``
    and ``meta_val_data`` of the listing. The outer optimizer is assumed to be
    ``optim.SGD(model.parameters(), lr=outer_lr)``. Each line below is the
    statement of the listing it transcribes; the closed form of the result is
    ``derivations/seed-errata.md`` (E5)-(E6), implemented by ``code_step_closed_form``.
    """
    theta = np.array(theta, dtype=np.float64)
    grad = np.zeros_like(theta)                              # optimizer.zero_grad()
    meta_loss = 0.0                                          # meta_loss = 0.0
    trajectory, support_grads, query_grads = [], [], []
    for (Xs, ys), (Xq, yq) in zip(support, query, strict=True):
        # inner_optimizer = optim.SGD(model.parameters(), lr=inner_lr): it holds the model's own tensors
        g = softmax.grad(theta, Xs, ys)                      # inner_loss.backward() ...
        grad = grad + g                                      # ... adds to .grad, which nobody zeroed
        theta = theta - inner_lr * grad                      # inner_optimizer.step(), in place
        meta_loss += float(softmax.loss(theta, Xq, yq))      # val_loss at the parameters as they are now
        # the graph of val_loss holds the parameters as leaves: backward() will add grad L_q(theta_j)
        query_grads.append(softmax.grad(theta, Xq, yq))
        support_grads.append(g)
        trajectory.append(theta)
    for h in query_grads:                                    # meta_loss.backward()
        grad = grad + h
    theta = theta - outer_lr * grad                          # optimizer.step()
    return CodeStep(theta, trajectory, support_grads, query_grads, meta_loss / len(query_grads))


def code_step_closed_form(theta, support, query, *, inner_lr, outer_lr):
    """The same update from its closed form, ``derivations/seed-errata.md`` (E5)-(E6).

    The task-``j`` parameters are ``theta_j = theta_0 - alpha sum_{i<=j} (j - i + 1) g_i``
    with ``g_i = grad L_s,i(theta_{i-1})`` (E5), and the update is
    ``theta_0 - sum_i [alpha (N - i + 1) + beta] g_i - beta sum_i grad L_q,i(theta_i)`` (E6).
    Returns the new parameters, shape of ``theta``.
    """
    theta0 = np.array(theta, dtype=np.float64)
    N = len(support)
    g, thetas = [], [theta0]
    for j in range(1, N + 1):
        Xs, ys = support[j - 1]
        g.append(softmax.grad(thetas[j - 1], Xs, ys))
        thetas.append(theta0 - inner_lr * sum((j - i + 1) * g[i - 1] for i in range(1, j + 1)))
    h = [softmax.grad(thetas[j], *query[j - 1]) for j in range(1, N + 1)]
    return (theta0
            - sum((inner_lr * (N - i + 1) + outer_lr) * g[i - 1] for i in range(1, N + 1))
            - outer_lr * sum(h))


def cross_entropy_one_output(theta, X):
    """``nn.CrossEntropyLoss`` of an ``nn.Linear(d, 1)``, whose only valid target is class 0:
    the mean of ``-log softmax`` over a single logit, ``-log 1 = 0`` whatever ``theta`` is
    (``derivations/softmax.md`` (S6))."""
    logits = (X @ theta)[:, None]
    return -np.mean(special.log_softmax(logits, axis=-1)[:, 0])
