"""The referees: MAML and its pieces written outside refmaml, the way users write them, for the
tests to hold refmaml (and its oracle, ``derivations/oracle.md``) against. Tests only; refmaml never
imports PyTorch or JAX, and nothing here calls refmaml. PyTorch and JAX are imported inside the
functions that use them, so that importing this module needs neither.

Three sections, by what they are for:

1. *Referees and their bugs* (PyTorch and JAX, the three linear models): correct implementations,
   and broken ones with each bug of ``BUGS`` that the oracle diagnoses; the helpers that run
   MAML through an ``nn.Sequential`` with ``torch.func.functional_call``.
2. *Users' implementations* (PyTorch and NumPy), each with one mistake the oracle's second version
   must name or locate ((O9)-(O11)), and MAML through an ``nn.Sequential`` MLP.
3. *Written apart from refmaml* (binary logistic regression): written from the contract of
   ``refmaml.oracle.check`` alone (the arguments, the returned values, the conventions: means over
   examples and tasks, ``(l2/2)||phi||^2`` on the support loss only), without reading refmaml's
   code: three correct ones (PyTorch, JAX, NumPy by hand) and one mistake each in the others.
   ``tests/test_oracle_independent.py`` checks what the oracle says of each.

Every MAML function has the signature ``refmaml.oracle.check`` calls:
``fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps[, l2])`` on NumPy arrays, returning
``(meta_loss, meta_grad[, inner_lr_grad])``.
"""

import numpy as np



# ================================================================================================
# 1. Referees and their bugs (PyTorch and JAX)
# ================================================================================================

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


# ================================================================================================
# 2. Users' implementations, one mistake each (PyTorch and NumPy)
# ================================================================================================

# --- NumPy, derivatives by hand (binary logistic) ---------------------------------------------


def numpy_logistic(mistake=None):
    """Logistic MAML with hand-written gradient and Hessian-vector product and an explicit reverse
    pass. ``mistake``: ``"hvp_sign"`` (g + alpha H g), ``"hessian_at_last"`` (every reverse step's
    Hessian at theta_K), ``"lr_grad_sign"`` (the rate gradient without its minus), ``"float32"``
    (everything computed in float32, returned as float64)."""
    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
        f = np.float32 if mistake == "float32" else np.float64
        theta, Xs, ys, Xq, yq = (np.asarray(a, dtype=f) for a in (theta, Xs, ys, Xq, yq))
        lr = np.asarray(inner_lr, dtype=f)
        l2 = f(l2)

        def sigmoid(z):
            return f(0.5) * (f(1) + np.tanh(z / f(2)))

        def loss(w, X, y, l2=f(0)):
            z = X @ w
            return np.mean(np.logaddexp(f(0), z) - y * z) + l2 / f(2) * (w @ w)

        def grad(w, X, y, l2=f(0)):
            return X.T @ (sigmoid(X @ w) - y) / f(len(y)) + l2 * w

        def hvp(w, X, y, v, l2=f(0)):
            p = sigmoid(X @ w)
            return X.T @ (p * (f(1) - p) * (X @ v)) / f(len(y)) + l2 * v

        T = len(Xs)
        total, g_theta, g_lr = f(0), np.zeros_like(theta), np.zeros_like(lr)
        for t in range(T):
            path = [theta]
            for _ in range(inner_steps):
                path.append(path[-1] - lr * grad(path[-1], Xs[t], ys[t], l2))
            total += loss(path[-1], Xq[t], yq[t]) / f(T)
            g = grad(path[-1], Xq[t], yq[t])
            for k in reversed(range(inner_steps)):
                contribution = g * grad(path[k], Xs[t], ys[t], l2)
                contribution = contribution if lr.ndim else np.sum(contribution)
                g_lr = g_lr + (contribution if mistake == "lr_grad_sign" else -contribution) / f(T)
                at = path[-1] if mistake == "hessian_at_last" else path[k]
                h = hvp(at, Xs[t], ys[t], lr * g, l2)
                g = g + h if mistake == "hvp_sign" else g - h
            g_theta = g_theta + g / f(T)
        out = (float(total), g_theta.astype(np.float64))
        # a rate given as an array (0-d included) is a learned rate: its gradient is returned
        return out + (g_lr.astype(np.float64),) if isinstance(inner_lr, np.ndarray) else out

    return fn


# --- PyTorch: the per-task loop with create_graph=True ----------------------------------------


def torch_user(model="logistic", mistake=None):
    """The usual PyTorch loop, and the mistakes users make in it. ``mistake``:

    * ``"l2_on_query"``: the regularised loss used for the meta-loss too;
    * ``"l2_without_half"``: ``l2 * ||phi||^2`` in the support loss;
    * ``"l2_norm"``: ``l2/2 * torch.norm(phi)``, a norm where its square belongs;
    * ``"reuse_inner_grad"``: the inner gradient computed once, at theta, and reused for every step;
    * ``"first_task_support"``: every task adapts on the first task's support set;
    * ``"squeeze"``: logits squeezed, which breaks with one example per set;
    * ``"textbook_bce"``: ``-mean(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)))``;
    * ``"float32"``: the model in float32;
    * ``"row_vector"``: theta kept as a ``(1, d)`` row;
    * ``"not_implemented"``: raises;
    * ``"loss_reported_grad_of_support"``: reports the query loss, differentiates the support loss;
    * ``"rates_transposed"``: per-parameter rates held in PyTorch's ``(out, in)`` layout and reshaped,
      not transposed, to theta's ``(d, C)``.
    """
    import torch
    F = torch.nn.functional

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
        if mistake == "not_implemented":
            raise NotImplementedError("this MAML handles one task at a time")
        dtype = torch.float32 if mistake == "float32" else torch.float64
        theta = torch.tensor(theta, dtype=dtype, requires_grad=True)
        Xs, Xq = torch.tensor(Xs, dtype=dtype), torch.tensor(Xq, dtype=dtype)
        ys, yq = torch.tensor(ys), torch.tensor(yq)
        if model != "softmax":
            ys, yq = ys.to(dtype), yq.to(dtype)
        lr_leaf = torch.tensor(np.asarray(inner_lr), dtype=dtype, requires_grad=True)
        lr = lr_leaf
        if mistake == "rates_transposed":
            lr_leaf = torch.tensor(np.asarray(inner_lr).T.copy(), dtype=dtype, requires_grad=True)
            lr = lr_leaf.reshape(theta.shape)
        params = theta.reshape(1, -1) if mistake == "row_vector" else theta

        def data_loss(w, X, y):
            z = X @ (w.T if mistake == "row_vector" else w)
            if mistake == "row_vector":
                z = z[:, 0]
            if mistake == "squeeze":
                z = z.squeeze()
            if model == "linear":
                return F.mse_loss(z, y)
            if model == "softmax":
                return F.cross_entropy(z, y)
            if mistake == "textbook_bce":
                p = torch.sigmoid(z)
                return -torch.mean(y * torch.log(p) + (1 - y) * torch.log(1 - p))
            return F.binary_cross_entropy_with_logits(z, y)

        def ridge(w):
            if mistake == "l2_without_half":
                return l2 * torch.sum(w ** 2)
            if mistake == "l2_norm":
                return l2 / 2 * torch.norm(w)
            return l2 / 2 * torch.sum(w ** 2)

        def support_loss(w, t):
            s = 0 if mistake == "first_task_support" else t
            return data_loss(w, Xs[s], ys[s]) + ridge(w)

        reported, differentiated = [], []
        for t in range(Xs.shape[0]):
            phi = params
            g0 = None
            for _ in range(inner_steps):
                if mistake == "reuse_inner_grad" and g0 is not None:
                    g = g0
                else:
                    g, = torch.autograd.grad(support_loss(phi, t), phi, create_graph=True)
                    g0 = g
                phi = phi - lr * g
            query = data_loss(phi, Xq[t], yq[t])
            if mistake == "l2_on_query":
                query = query + ridge(phi)
            reported.append(query)
            differentiated.append(data_loss(phi, Xs[t], ys[t]) if mistake == "loss_reported_grad_of_support"
                                  else query)
        meta = torch.stack(differentiated).mean()
        g_theta, g_lr = torch.autograd.grad(meta, (theta, lr_leaf), allow_unused=True)
        if mistake == "row_vector":
            g_theta = g_theta.reshape(1, -1)
        g_lr = torch.zeros_like(lr_leaf) if g_lr is None else g_lr
        out = (torch.stack(reported).mean().item(), g_theta.detach().numpy())
        if mistake == "rates_transposed":
            g_lr = g_lr.reshape(np.shape(inner_lr))
        return out + (g_lr.detach().numpy(),) if np.ndim(inner_lr) else out

    return fn


def torch_tutorial_averaged(model="logistic"):
    """The seed tutorial's listing with the query losses averaged before ``backward()``: an
    optimizer on the parameters themselves, one gradient buffer never zeroed between tasks."""
    import torch
    F = torch.nn.functional

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps):
        p = torch.nn.Parameter(torch.tensor(theta))
        Xs, Xq, ys, yq = map(torch.tensor, (Xs, Xq, ys, yq))
        loss = F.binary_cross_entropy_with_logits if model == "logistic" else F.cross_entropy
        queries = []
        for t in range(Xs.shape[0]):
            inner_optimizer = torch.optim.SGD([p], lr=inner_lr)
            for _ in range(inner_steps):
                loss(Xs[t] @ p, ys[t]).backward()
                inner_optimizer.step()
            queries.append(loss(Xq[t] @ p, yq[t]))
        meta_loss = torch.stack(queries).mean()
        meta_loss.backward()
        return meta_loss.item(), p.grad.numpy()

    return fn


# --- PyTorch networks: nn.Sequential, vector_to_parameters, torch.func.functional_call -----------


def torch_network(sizes, activation="relu", loss="mse", *, create_graph=True):
    """MAML through an ``nn.Sequential`` MLP the way users write it: the flat ``theta`` poured into
    the module with ``vector_to_parameters``, the adapted parameters kept in a dict and run with
    ``torch.func.functional_call``, the meta-gradient flattened with ``parameters_to_vector``. With
    ``create_graph=False`` it is first-order MAML."""
    import torch
    from torch.func import functional_call
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    F = torch.nn.functional
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU() if activation == "relu" else torch.nn.Tanh())
    net = torch.nn.Sequential(*layers).double()

    def objective(params, X, y):
        out = functional_call(net, params, (X,))
        if loss == "softmax":
            return F.cross_entropy(out, y)
        out = out.squeeze(-1) if sizes[-1] == 1 else out
        return F.mse_loss(out, y) if loss == "mse" else F.binary_cross_entropy_with_logits(out, y)

    def fn(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
        vector_to_parameters(torch.tensor(theta), net.parameters())
        params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
        rates = torch.tensor(np.asarray(inner_lr), requires_grad=True)
        if rates.ndim:  # one rate per parameter, in the same flat order as theta
            sizes_ = [v.numel() for v in params.values()]
            lr = {k: r.view_as(v) for (k, v), r in zip(params.items(), torch.split(rates, sizes_))}
        else:
            lr = {k: rates for k in params}
        Xs, Xq, ys, yq = map(torch.tensor, (Xs, Xq, ys, yq))
        losses = []
        for t in range(Xs.shape[0]):
            phi = params
            for _ in range(inner_steps):
                inner = objective(phi, Xs[t], ys[t]) + l2 / 2 * sum(torch.sum(p ** 2) for p in phi.values())
                grads = torch.autograd.grad(inner, list(phi.values()), create_graph=create_graph)
                phi = {k: p - lr[k] * g for (k, p), g in zip(phi.items(), grads)}
            losses.append(objective(phi, Xq[t], yq[t]))
        meta = torch.stack(losses).mean()
        *g_theta, g_lr = torch.autograd.grad(meta, list(params.values()) + [rates], allow_unused=True)
        out = (meta.item(), parameters_to_vector(g_theta).numpy())
        g_lr = torch.zeros_like(rates) if g_lr is None else g_lr
        return out + (g_lr.numpy(),) if np.ndim(inner_lr) else out

    return fn


# ================================================================================================
# 3. Written apart from refmaml: binary logistic regression (PyTorch, JAX, NumPy)
# ================================================================================================

def _torch():
    """PyTorch and its functional namespace, imported on use."""
    import torch

    return torch, torch.nn.functional


def _jax():
    """JAX in float64 and ``jax.numpy``, imported on use."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jax, jnp


# ----------------------------------------------------------------- torch helpers
def _t(a, dtype=None):
    torch, _ = _torch()
    return torch.as_tensor(np.asarray(a), dtype=torch.float64 if dtype is None else dtype)


def _torch_maml(theta, Xs, ys, Xq, yq, lr, inner_steps, l2, dtype=None,
                support_loss=None, query_loss=None, reuse_grad=False, first_task=False,
                extra=()):
    torch, F = _torch()
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
    import jax.numpy as jnp  # float64 is switched on by jax_correct, before any tracing

    return jnp.mean(jnp.logaddexp(0.0, z) - y * z)


def jax_correct(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """Correct JAX MAML: jax.grad inner loop, vmap over tasks, value_and_grad for the meta-gradient."""
    jax, jnp = _jax()

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
    _, F = _torch()
    sl = lambda phi, X, y: F.binary_cross_entropy_with_logits(X @ phi, y) + l2 * phi.dot(phi)
    meta, (g,) = _torch_maml(theta, Xs, ys, Xq, yq, float(inner_lr), inner_steps, l2, support_loss=sl)
    return float(meta.item()), g.detach().numpy().astype(np.float64)


def torch_ridge_on_query(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG: PyTorch MAML that also adds (l2/2)||phi||^2 to the query loss."""
    _, F = _torch()
    ql = lambda phi, X, y: F.binary_cross_entropy_with_logits(X @ phi, y) + 0.5 * l2 * phi.dot(phi)
    meta, (g,) = _torch_maml(theta, Xs, ys, Xq, yq, float(inner_lr), inner_steps, l2, query_loss=ql)
    return float(meta.item()), g.detach().numpy().astype(np.float64)


def torch_float32(theta, Xs, ys, Xq, yq, *, inner_lr, inner_steps, l2=0.0):
    """BUG (precision): correct PyTorch algorithm computed in float32, returns float32 gradient."""
    torch, _ = _torch()
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
