"""MAML written the way users write it, in PyTorch and JAX: correct versions, and broken ones
with each bug the oracle diagnoses (``derivations/oracle.md``). Tests only; refmaml never
imports these libraries.

Every function has the signature ``refmaml.oracle.check`` calls:
``fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps[, l2])`` on NumPy arrays, returning
``(meta_loss, meta_grad[, inner_lr_grad])``.
"""

import numpy as np

BUGS = ("first_order", "drift", "sum_over_tasks", "sum_over_examples", "steps_minus_one", "steps_plus_one",
        "inner_on_query", "meta_loss_on_support", "lr_no_grad")


# --- PyTorch ---------------------------------------------------------------------------------

def torch_loss(torch, model, theta, X, y, l2=0.0, reduction="mean"):
    """Mean (or summed) cross-entropy of the logits ``X @ theta`` (squared error for linear
    regression, PyTorch's ``mse_loss``), plus ``(l2/2)||theta||^2``."""
    F = torch.nn.functional
    z = X @ theta
    if model == "linear":
        loss = F.mse_loss(z, y, reduction=reduction)
    elif model == "logistic":
        loss = F.binary_cross_entropy_with_logits(z, y, reduction=reduction)
    else:
        loss = F.cross_entropy(z, y, reduction=reduction)
    return loss + l2 / 2 * torch.sum(theta ** 2) if l2 else loss


def torch_loop(model, bug=None):
    """The per-task loop with ``torch.autograd.grad(..., create_graph=True)``, and its bugs."""
    import torch

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
        theta = torch.tensor(theta, requires_grad=True)
        lr = torch.tensor(inner_lr, dtype=torch.float64, requires_grad=bug != "lr_no_grad")
        Xs, Xq, ys, yq = map(torch.tensor, (Xs, Xq, ys, yq))
        if bug == "inner_on_query":
            Xs, ys = Xq, yq
        if bug == "meta_loss_on_support":
            Xq, yq = Xs, ys
        steps = inner_steps + {"steps_minus_one": -1, "steps_plus_one": 1}.get(bug, 0)
        reduction = "sum" if bug == "sum_over_examples" else "mean"
        losses, start = [], theta
        for t in range(Xs.shape[0]):
            phi = start
            for _ in range(max(steps, 0)):
                inner = torch_loss(torch, model, phi, Xs[t], ys[t], l2, reduction)
                g, = torch.autograd.grad(inner, phi, create_graph=bug != "first_order")
                phi = phi - lr * g
            losses.append(torch_loss(torch, model, phi, Xq[t], yq[t], reduction=reduction))
            if bug == "drift":
                start = phi
        meta = torch.stack(losses)
        meta = meta.sum() if bug == "sum_over_tasks" else meta.mean()
        wrt = (theta, lr) if lr.requires_grad else (theta,)
        grads = torch.autograd.grad(meta, wrt, allow_unused=True)
        lr_grad = grads[1] if len(grads) > 1 and grads[1] is not None else torch.zeros_like(lr)
        out = (meta.item(), grads[0].numpy())
        return out + (lr_grad.numpy(),) if np.ndim(inner_lr) else out

    return fn


def torch_batched(model):
    """All tasks at once: per-task parameters ``(T,) + theta.shape``, one autograd call per step."""
    import torch

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
        theta = torch.tensor(theta, requires_grad=True)
        lr = torch.tensor(inner_lr, dtype=torch.float64, requires_grad=True)
        Xs, Xq, ys, yq = map(torch.tensor, (Xs, Xq, ys, yq))
        T = Xs.shape[0]

        def losses(phi, X, y, l2):
            z = torch.einsum("tnd,td...->tn...", X, phi)
            if model == "linear":
                each = ((z - y) ** 2).mean(1)
            elif model == "logistic":
                each = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none").mean(1)
            else:
                each = torch.nn.functional.cross_entropy(z.transpose(1, 2), y, reduction="none").mean(1)
            return each + l2 / 2 * torch.sum(phi.reshape(T, -1) ** 2, dim=1)

        phi = theta.expand((T,) + theta.shape)
        for _ in range(inner_steps):
            g, = torch.autograd.grad(losses(phi, Xs, ys, l2).sum(), phi, create_graph=True)
            phi = phi - lr * g
        meta = losses(phi, Xq, yq, 0.0).mean()
        g_theta, g_lr = torch.autograd.grad(meta, (theta, lr), allow_unused=True)
        g_lr = torch.zeros_like(lr) if g_lr is None else g_lr
        out = (meta.item(), g_theta.numpy())
        return out + (g_lr.numpy(),) if np.ndim(inner_lr) else out

    return fn


def torch_func(model):
    """``torch.func``: ``grad`` for the inner steps, ``vmap`` over tasks, ``grad`` of the mean."""
    import torch
    from torch.func import grad, vmap

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
        Xs, Xq, ys, yq = map(torch.tensor, (Xs, Xq, ys, yq))

        def task(theta, lr, Xs, ys, Xq, yq):
            phi = theta
            for _ in range(inner_steps):
                phi = phi - lr * grad(lambda p: torch_loss(torch, model, p, Xs, ys, l2))(phi)
            return torch_loss(torch, model, phi, Xq, yq)

        def meta(theta, lr):
            return vmap(task, in_dims=(None, None, 0, 0, 0, 0))(theta, lr, Xs, ys, Xq, yq).mean()

        theta, lr = torch.tensor(theta), torch.tensor(inner_lr, dtype=torch.float64)
        g_theta, g_lr = grad(meta, argnums=(0, 1))(theta, lr)
        out = (meta(theta, lr).item(), g_theta.numpy())
        return out + (g_lr.numpy(),) if np.ndim(inner_lr) else out

    return fn


def torch_tutorial(model):
    """The seed tutorial's listing (section 5.3), with K inner steps per task: an optimizer on
    the parameters themselves and one gradient buffer that is never zeroed between tasks."""
    import torch

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps):
        p = torch.nn.Parameter(torch.tensor(theta))
        Xs, Xq, ys, yq = map(torch.tensor, (Xs, Xq, ys, yq))
        meta_loss = 0.0
        for t in range(Xs.shape[0]):
            inner_optimizer = torch.optim.SGD([p], lr=inner_lr)
            for _ in range(inner_steps):
                inner_loss = torch_loss(torch, model, p, Xs[t], ys[t])
                inner_loss.backward()
                inner_optimizer.step()
            meta_loss = meta_loss + torch_loss(torch, model, p, Xq[t], yq[t])
        meta_loss.backward()
        return meta_loss.item() / Xs.shape[0], p.grad.numpy()

    return fn


# --- JAX ------------------------------------------------------------------------------------

def jax_maml(model, bug=None):
    """``jax.grad`` through the unrolled loop, ``vmap`` over tasks, ``jit``; float64. With
    ``bug="first_order"`` the inner gradients pass through ``jax.lax.stop_gradient``."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def loss(theta, X, y, l2=0.0):
        z = X @ theta
        if model == "linear":
            each = (z - y) ** 2
        elif model == "logistic":
            each = jnp.logaddexp(0.0, z) - y * z
        else:
            each = jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0]
        return jnp.mean(each) + l2 / 2 * jnp.sum(theta ** 2)

    def build(K):
        def task(theta, lr, Xs, ys, Xq, yq, l2):
            phi = theta
            for _ in range(K):
                g = jax.grad(loss)(phi, Xs, ys, l2)
                phi = phi - lr * (jax.lax.stop_gradient(g) if bug == "first_order" else g)
            return loss(phi, Xq, yq)

        def meta(theta, lr, Xs, ys, Xq, yq, l2):
            each = jax.vmap(task, in_axes=(None, None, 0, 0, 0, 0, None))
            return jnp.mean(each(theta, lr, Xs, ys, Xq, yq, l2))

        return jax.jit(jax.value_and_grad(meta, argnums=(0, 1)))

    compiled = {}

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
        f = compiled.setdefault(inner_steps, build(inner_steps))
        args = map(jnp.asarray, (theta, inner_lr, Xs, ys, Xq, yq))
        value, (g_theta, g_lr) = f(*args, l2)
        out = (float(value), np.asarray(g_theta))
        return out + (np.asarray(g_lr),) if np.ndim(inner_lr) else out

    return fn


# --- PyTorch networks: nn.Sequential through torch.func --------------------------------------

def named_views(net, flat):
    """``{name: view of flat}`` for ``torch.func.functional_call(net, ...)``: the flat vector split in
    the order of ``net.named_parameters()`` (that of ``parameters_to_vector``)."""
    out, start = {}, 0
    for name, p in net.named_parameters():
        out[name] = flat[start:start + p.numel()].view_as(p)
        start += p.numel()
    return out


def torch_meta_loss(torch, task_loss, theta, Xs, ys, Xq, yq, inner_lr, inner_steps, l2):
    """MAML's meta-loss as a PyTorch loop writes it: per task ``inner_steps`` steps of
    ``phi - inner_lr * grad`` with ``create_graph=True`` on ``task_loss(phi, X, y, l2)``, then the
    mean over tasks of the query loss (no ``l2``)."""
    losses = []
    for k in range(Xs.shape[0]):
        phi = theta
        for _ in range(inner_steps):
            g, = torch.autograd.grad(task_loss(phi, torch.tensor(Xs[k]), torch.tensor(ys[k]), l2), phi,
                                     create_graph=True)
            phi = phi - inner_lr * g
        losses.append(task_loss(phi, torch.tensor(Xq[k]), torch.tensor(yq[k])))
    return torch.stack(losses).mean()
