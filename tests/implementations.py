"""MAML implementations written from the definitions, the way users write them (PyTorch and NumPy),
each with one mistake the oracle's second version must name or locate (``derivations/oracle.md``
(O9)-(O11)). Tests only: nothing here calls refmaml.

Signature as ``refmaml.oracle.check`` calls it: ``fn(theta, Xs, ys, Xq, yq, *, inner_lr,
inner_steps[, l2])`` on NumPy arrays, returning ``(meta_loss, meta_grad[, inner_lr_grad])``.
"""

import numpy as np

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
