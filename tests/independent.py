"""MAML meta-gradients of binary logistic regression as users write them, written apart from refmaml.

Written from the contract of ``refmaml.oracle.check`` alone (the arguments, the returned values, the
conventions: means over examples and tasks, ``(l2/2)||phi||^2`` on the support loss only), without
reading refmaml's code, and not calling it: three correct ones (PyTorch, JAX, NumPy by hand) and
one mistake each in the others. ``tests/test_oracle_independent.py`` checks what the oracle says of
each. Tests only."""
import numpy as np
import torch
import torch.nn.functional as F
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp


# ----------------------------------------------------------------- torch helpers
def _t(a, dtype=torch.float64):
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def _torch_maml(theta, Xs, ys, Xq, yq, lr, inner_steps, l2, dtype=torch.float64,
                support_loss=None, query_loss=None, reuse_grad=False, first_task=False,
                extra=()):
    th = _t(theta, dtype).requires_grad_(True)
    Xs, ys, Xq, yq = (_t(a, dtype) for a in (Xs, ys, Xq, yq))
    if support_loss is None:
        support_loss = lambda phi, X, y: F.binary_cross_entropy_with_logits(X @ phi, y) + 0.5 * l2 * phi.dot(phi)
    if query_loss is None:
        query_loss = lambda phi, X, y: F.binary_cross_entropy_with_logits(X @ phi, y)
    T = Xs.shape[0]
    total = 0.0
    for t in range(T):
        ts = 0 if first_task else t
        phi = th
        g0 = None
        for _ in range(inner_steps):
            if reuse_grad and g0 is not None:
                g = g0
            else:
                (g,) = torch.autograd.grad(support_loss(phi, Xs[ts], ys[ts]), phi, create_graph=True)
                g0 = g
            phi = phi - lr * g
        total = total + query_loss(phi, Xq[t], yq[t])
    meta = total / T
    grads = torch.autograd.grad(meta, (th,) + tuple(extra))
    return meta, grads


# ----------------------------------------------------------------- 1. torch correct
def torch_correct(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """Correct PyTorch MAML: per-task loop, autograd.grad(create_graph=True), BCE-with-logits."""
    meta, (g,) = _torch_maml(theta, Xs, ys, Xq, yq, float(inner_lr), inner_steps, l2)
    return float(meta.item()), g.detach().numpy().astype(np.float64)


# ----------------------------------------------------------------- 2. jax correct
def _jbce(z, y):
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z)


def jax_correct(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """Correct JAX MAML: jax.grad inner loop, vmap over tasks, value_and_grad for the meta-gradient."""
    def sup(phi, X, y):
        return _jbce(X @ phi, y) + 0.5 * l2 * jnp.dot(phi, phi)

    def task_loss(th, xs, ys_, xq, yq_):
        phi = th
        for _ in range(inner_steps):
            phi = phi - inner_lr * jax.grad(sup)(phi, xs, ys_)
        return _jbce(xq @ phi, yq_)

    def meta(th):
        return jnp.mean(jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(th, Xs, ys, Xq, yq))

    args = [jnp.asarray(np.asarray(a, dtype=np.float64)) for a in (Xs, ys, Xq, yq)]
    Xs, ys, Xq, yq = args
    v, g = jax.value_and_grad(meta)(jnp.asarray(np.asarray(theta, dtype=np.float64)))
    return float(v), np.asarray(g, dtype=np.float64)


# ----------------------------------------------------------------- numpy helpers
def _sig(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _bce(z, y):
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _np_maml(theta, Xs, ys, Xq, yq, lr, K, l2, hvp_sign=-1.0, hessian_last=False, textbook=False):
    theta = np.asarray(theta, np.float64)
    Xs, ys, Xq, yq = (np.asarray(a, np.float64) for a in (Xs, ys, Xq, yq))
    T, n, d = Xs.shape
    loss_tot = 0.0
    grad_tot = np.zeros(d)
    for t in range(T):
        X, y = Xs[t], ys[t]
        phis = [theta]
        phi = theta
        for _ in range(K):
            gs = X.T @ (_sig(X @ phi) - y) / n + l2 * phi
            phi = phi - lr * gs
            phis.append(phi)
        zq = Xq[t] @ phi
        m = Xq[t].shape[0]
        if textbook:
            s = 1.0 / (1.0 + np.exp(-zq))
            loss_tot += float(-np.mean(yq[t] * np.log(s) + (1 - yq[t]) * np.log(1 - s)))
        else:
            loss_tot += _bce(zq, yq[t])
        g = Xq[t].T @ (_sig(zq) - yq[t]) / m
        for k in range(K - 1, -1, -1):
            p = phis[K] if hessian_last else phis[k]
            s = _sig(X @ p)
            w = s * (1 - s)
            v = lr * g
            Hv = X.T @ (w * (X @ v)) / n + l2 * v
            g = g + hvp_sign * Hv
        grad_tot += g
    return loss_tot / T, grad_tot / T


# ----------------------------------------------------------------- 3-5, 9 numpy
def numpy_correct(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """Correct hand NumPy MAML: forward saving iterates, reverse g <- g - lr*H_s(phi_k) g."""
    return _np_maml(theta, Xs, ys, Xq, yq, inner_lr, inner_steps, l2)


def numpy_hvp_sign(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG: hand NumPy MAML with sign error in reverse step, g <- g + lr*H g."""
    return _np_maml(theta, Xs, ys, Xq, yq, inner_lr, inner_steps, l2, hvp_sign=+1.0)


def numpy_hessian_last(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG: hand NumPy MAML using Hessian at phi_K for every reverse step instead of phi_k."""
    return _np_maml(theta, Xs, ys, Xq, yq, inner_lr, inner_steps, l2, hessian_last=True)


def numpy_textbook_bce(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG (numerical): meta_loss via unclipped textbook log(sigmoid) BCE (inf/NaN at large logits); gradient correct."""
    return _np_maml(theta, Xs, ys, Xq, yq, inner_lr, inner_steps, l2, textbook=True)


# ----------------------------------------------------------------- 6-8, 10-12 torch buggy
def torch_reused_grad(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG: PyTorch MAML computing the inner gradient once at phi_0 and reusing it for all inner steps."""
    meta, (g,) = _torch_maml(theta, Xs, ys, Xq, yq, float(inner_lr), inner_steps, l2, reuse_grad=True)
    return float(meta.item()), g.detach().numpy().astype(np.float64)


def torch_ridge_no_half(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG: PyTorch MAML with support ridge written l2*||phi||^2 (missing the 1/2)."""
    sl = lambda phi, X, y: F.binary_cross_entropy_with_logits(X @ phi, y) + l2 * phi.dot(phi)
    meta, (g,) = _torch_maml(theta, Xs, ys, Xq, yq, float(inner_lr), inner_steps, l2, support_loss=sl)
    return float(meta.item()), g.detach().numpy().astype(np.float64)


def torch_ridge_on_query(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG: PyTorch MAML that also adds (l2/2)||phi||^2 to the query loss."""
    ql = lambda phi, X, y: F.binary_cross_entropy_with_logits(X @ phi, y) + 0.5 * l2 * phi.dot(phi)
    meta, (g,) = _torch_maml(theta, Xs, ys, Xq, yq, float(inner_lr), inner_steps, l2, query_loss=ql)
    return float(meta.item()), g.detach().numpy().astype(np.float64)


def torch_float32(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG (precision): correct PyTorch algorithm computed in float32, returns float32 gradient."""
    meta, (g,) = _torch_maml(theta, Xs, ys, Xq, yq, float(inner_lr), inner_steps, l2, dtype=torch.float32)
    return float(meta.item()), g.detach().numpy()  # float32 array


def torch_grad_2d(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG (shape): correct PyTorch MAML but returns meta_grad with shape (1, d)."""
    meta, (g,) = _torch_maml(theta, Xs, ys, Xq, yq, float(inner_lr), inner_steps, l2)
    return float(meta.item()), g.detach().numpy().astype(np.float64).reshape(1, -1)


def torch_first_task_support(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG: PyTorch MAML that adapts every task on the first task's support set Xs[0], ys[0]."""
    meta, (g,) = _torch_maml(theta, Xs, ys, Xq, yq, float(inner_lr), inner_steps, l2, first_task=True)
    return float(meta.item()), g.detach().numpy().astype(np.float64)


# ----------------------------------------------------------------- 13-14 rate gradients
def torch_correct_lr(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """Correct PyTorch MAML with per-parameter rates; also returns d meta_loss / d inner_lr."""
    lr = _t(inner_lr).requires_grad_(True)
    meta, (g, glr) = _torch_maml(theta, Xs, ys, Xq, yq, lr, inner_steps, l2, extra=(lr,))
    return (float(meta.item()), g.detach().numpy().astype(np.float64),
            glr.detach().numpy().astype(np.float64))


def torch_lr_sign_lr(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG: like torch_correct_lr but returns the negated inner_lr gradient."""
    v, g, glr = torch_correct_lr(theta, Xs, ys, Xq, yq, inner_lr=inner_lr, inner_steps=inner_steps, l2=l2)
    return v, g, -glr
