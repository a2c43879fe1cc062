"""The right answer of a case, and the answers of the bugs the oracle diagnoses.

Everything is computed in float64 with refmaml's public functions; the bugs'
answers are derived in ``derivations/oracle.md`` (O1)-(O6), (O9)-(O10),
(O14)-(O21) and (O24).
"""

from dataclasses import dataclass, field

import numpy as np

import json

from .. import models
from ..maml import adapt, meta_value_and_grad, sum_to_rate
from . import cases

DIAGNOSES = ("first_order", "drift", "sum_over_tasks", "sum_over_examples", "steps_minus_one",
             "steps_plus_one", "inner_on_query", "meta_loss_on_support", "lr_no_grad", "tutorial_code",
             "l2_on_query", "l2_without_half", "hessian_at_last_iterate",
             # the third version (O14)-(O21), (O24)
             "support_query_swapped", "broadcast_targets", "half_mse", "mse_sum_over_outputs",
             "bn_eval_statistics", "bn_detached_statistics", "all_adapted", "head_only_adapted",
             "biases_not_adapted", "maxpool_no_second_order", "layout", "bn_support_statistics_at_query")
# Bugs whose answers differ from the truth only where the support loss has a ridge term (l2 > 0).
RIDGE = ("l2_on_query", "l2_without_half")


@dataclass(frozen=True)
class Answer:
    """A meta-loss, a meta-gradient and, where it is defined, the gradient with respect to
    ``inner_lr`` (``None``: not part of the comparison); ``note`` says which variant of a bug it is
    (``layout``: which layout)."""

    loss: float
    grad: np.ndarray
    lr_grad: object = None
    note: str = field(default="", compare=False)

    def scaled(self, loss=1.0, grad=1.0, lr_grad=1.0, note=None):
        rate = None if self.lr_grad is None else self.lr_grad * lr_grad
        return Answer(self.loss * loss, self.grad * grad, rate, self.note if note is None else note)


_CASE = object()  # "the case's own" (its mask)


def _meta(case, rate, *, Xs=None, ys=None, Xq=None, yq=None, lr=None, steps=None, l2=None, first_order=False,
          model=None, mask=_CASE, theta=None):
    """``meta_value_and_grad`` on the case with some of its parts replaced."""
    loss, grad, lr_grad = meta_value_and_grad(
        case.theta if theta is None else theta, case.Xs if Xs is None else Xs, case.ys if ys is None else ys,
        case.Xq if Xq is None else Xq, case.yq if yq is None else yq,
        inner_lr=rate if lr is None else lr, inner_steps=case.inner_steps if steps is None else steps,
        model=case.model if model is None else model, l2=case.l2 if l2 is None else l2,
        inner_mask=case.mask if mask is _CASE else mask, first_order=first_order, lr_grad=True)
    return Answer(float(loss), np.asarray(grad), np.asarray(lr_grad))


def _masked(case, rate):
    """The mask as a rate of zero (M10): ``(rate * mask, back)``, ``back`` taking the gradient with
    respect to that effective rate (theta's shape) to the gradient of ``rate`` itself."""
    if case.mask is None:
        return rate, lambda G: G
    mu = np.asarray(case.mask, dtype=np.float64)

    def back(G):
        G = np.asarray(G) * mu
        return G if np.ndim(rate) else np.sum(G)

    return np.asarray(rate) * mu, back


def truth(case, rate):
    """The exact meta-loss, meta-gradient (M6) and rate gradient (V3)-(V4), mean over tasks (with
    the case's mask, (M10))."""
    return _meta(case, rate)


def first_order(case, rate):
    """First-order MAML (M8) and its rate gradient (V5)."""
    return _meta(case, rate, first_order=True)


def trajectory(case, rate):
    """``theta_0 .. theta_K`` of every task: ``(K + 1, T) + theta.shape``."""
    return np.asarray(adapt(case.theta, case.Xs, case.ys, inner_lr=rate, inner_steps=case.inner_steps,
                            model=case.model, l2=case.l2, inner_mask=case.mask, return_trajectory=True))


def drift(case, rate):
    """Task ``t`` starts where task ``t - 1`` ended (O1), differentiated exactly through the whole
    chain (O2), and the in-place version whose gradient is the mean of the query gradients at the
    drifted points (O3)."""
    model = models.get(case.model)
    rate, back = _masked(case, rate)
    T, K = case.T, case.inner_steps
    phi, paths, grads, ends = case.theta, [], [], []
    for t in range(T):
        path, g_t = [phi], []
        for _ in range(K):
            g = model.grad(phi, case.Xs[t], case.ys[t], l2=case.l2)
            g_t.append(g)
            phi = phi - rate * g
            path.append(phi)
        paths.append(path)
        grads.append(g_t)
        ends.append(phi)
    loss = float(np.mean([model.loss(ends[t], case.Xq[t], case.yq[t]) for t in range(T)]))
    query = [model.grad(ends[t], case.Xq[t], case.yq[t]) for t in range(T)]
    adjoint, lr_grad = np.zeros_like(case.theta), np.zeros(np.shape(rate))
    for t in reversed(range(T)):
        adjoint = adjoint + query[t] / T
        for k in reversed(range(K)):
            lr_grad = lr_grad - sum_to_rate(np, (adjoint * grads[t][k])[None], np.shape(rate))[0]
            adjoint = adjoint - model.hvp(paths[t][k], case.Xs[t], case.ys[t], rate * adjoint, l2=case.l2)
    return [Answer(loss, adjoint, back(lr_grad)), Answer(loss, np.mean(query, axis=0))]


def tutorial_code(case, rate):
    """The seed tutorial's loop (``derivations/seed-errata.md`` (E5)-(E6)) with ``K`` inner steps
    per task (O6): one gradient buffer that is never zeroed, parameters updated in place. Its
    meta-loss as printed (mean) or summed, its buffer as is or divided by ``T``."""
    model = models.get(case.model)
    rate, _ = _masked(case, rate)
    buffer, current, losses, pending = np.zeros_like(case.theta), case.theta, [], []
    for t in range(case.T):
        for _ in range(case.inner_steps):
            buffer = buffer + model.grad(current, case.Xs[t], case.ys[t], l2=case.l2)
            current = current - rate * buffer
        losses.append(float(model.loss(current, case.Xq[t], case.yq[t])))
        pending.append(model.grad(current, case.Xq[t], case.yq[t]))
    inner = buffer
    buffer = inner + np.sum(pending, axis=0)
    mean, total = float(np.mean(losses)), float(np.sum(losses))
    # the query losses averaged before backward(): the buffer gains the mean of the h_t (O6)
    averaged = inner + np.mean(pending, axis=0)
    return [Answer(mean, buffer), Answer(mean, buffer / case.T), Answer(total, buffer), Answer(mean, averaged)]


def unrolled(case, rate, *, query_l2=0.0, hessian_at_last=False, product=None, query=None):
    """(O9)-(O10): the meta-loss with a ridge term ``(query_l2/2)||theta_K||^2`` in the query loss,
    and its gradient by reverse accumulation, every reverse step taking the Hessian at ``theta_k``
    (exact) or, with ``hessian_at_last``, at ``theta_K``; mean over tasks. ``product(theta, X, y,
    w)``, if given, stands for the support Hessian-vector product ``H_s(theta) w`` (with the ridge
    term) of every reverse step ((O20)); ``query(t, path)``, if given, for task ``t``'s query loss
    and its gradient at ``path[K, t]`` ((O24))."""
    model = models.get(case.model)
    path = trajectory(case, rate)
    rate, back = _masked(case, rate)
    if product is None:
        def product(theta, X, y, w):
            return np.asarray(model.hvp(theta, X, y, w, l2=case.l2))
    K, T = case.inner_steps, case.T
    loss, grad, lr_grad = 0.0, np.zeros_like(case.theta), np.zeros(np.shape(rate))
    for t in range(T):
        end = path[K, t]
        if query is None:
            value, g = model.loss(end, case.Xq[t], case.yq[t], l2=query_l2), model.grad(end, case.Xq[t], case.yq[t],
                                                                                        l2=query_l2)
        else:
            value, g = query(t, path)
        loss += float(value) / T
        g = np.asarray(g)
        for k in reversed(range(K)):
            step = model.grad(path[k, t], case.Xs[t], case.ys[t], l2=case.l2)
            lr_grad = lr_grad - sum_to_rate(np, (g * step)[None], np.shape(rate))[0] / T
            at = path[K if hessian_at_last else k, t]
            g = g - product(at, case.Xs[t], case.ys[t], rate * g)
        grad = grad + g / T
    return Answer(loss, grad, back(lr_grad))


def _sum_over_examples(case, rate):
    """Losses summed over examples instead of averaged (O4): the support sum is the mean's step at
    rate ``n alpha`` (with ``l2 / n`` if the ridge term is added once, ``l2`` if it is summed too),
    the query sum multiplies loss and gradient by ``m``."""
    n, m = case.Xs.shape[1], case.Xq.shape[1]
    out = []
    for l2 in (case.l2 / n, case.l2):
        support = _meta(case, rate, lr=n * rate, l2=l2)
        out += [support.scaled(m, m, m * n), support.scaled(1, 1, n)]
    return out + [truth(case, rate).scaled(m, m, m)]


# --- the third version's bugs (O14)-(O21) --------------------------------------------------------

def _outputs(case):
    model = models.get(case.model)
    return model.dimensions(case.theta.shape)[1]


def _single_mse(case):
    """Whether the case's model is mse with one output per example (targets ``(T, n)``)."""
    return models.get(case.model).targets == "real" and tuple(_outputs(case)) in ((), (1,))


def broadcast_targets(case, rate):
    """(O14): outputs ``(n, 1)`` against targets ``(n,)`` (or the reverse) in PyTorch's
    ``mse_loss``: the mean of all ``n x n`` squared differences, which is the mse against the
    mean target plus the targets' (biased) variance. In both losses, the support loss only, the
    query loss only."""
    if not _single_mse(case):
        return []

    def mean(y):
        return np.broadcast_to(np.mean(y, axis=1, keepdims=True), y.shape)

    spread = float(np.mean(np.var(case.yq, axis=1)))
    both = _meta(case, rate, ys=mean(case.ys), yq=mean(case.yq))
    support = _meta(case, rate, ys=mean(case.ys))
    query = _meta(case, rate, yq=mean(case.yq))
    return [Answer(both.loss + spread, both.grad, both.lr_grad, "support and query losses"),
            Answer(support.loss, support.grad, support.lr_grad, "support loss"),
            Answer(query.loss + spread, query.grad, query.lr_grad, "query loss")]


def _scaled_data_loss(case, rate, c):
    """(O15): the data loss (not the ridge term) multiplied by ``c`` in both sets, the support set
    only, the query set only: the support step is the truth's at rate ``c alpha`` with ridge
    coefficient ``l2 / c``, and the query loss is ``c`` times larger; the rate gradient follows by
    the chain rule through ``alpha' = c alpha``."""
    support = _meta(case, rate, lr=c * rate, l2=case.l2 / c)
    return [support.scaled(c, c, c * c, note="support and query losses"),
            support.scaled(1, 1, c, note="support loss"),
            truth(case, rate).scaled(c, c, c, note="query loss")]


def half_mse(case, rate):
    """(O15) with ``c = 1/2``: ``0.5 * mse`` (the textbook's ``1/2 ||r||^2`` with a mean)."""
    return _scaled_data_loss(case, rate, 0.5) if models.get(case.model).targets == "real" else []


def mse_sum_over_outputs(case, rate):
    """(O15) with ``c = d_out``: the squared errors summed over the outputs of each example and
    averaged over examples (``((out - y)**2).sum(-1).mean()``), where refmaml averages over both."""
    outputs = tuple(_outputs(case))
    if models.get(case.model).targets != "real" or not outputs or outputs[-1] < 2:
        return []
    return _scaled_data_loss(case, rate, float(outputs[-1]))


def _rebuilt(model, replace):
    """``model`` with each layer ``i`` replaced by ``replace(i, layer)`` (the same parameters)."""
    model = models.get(model)
    layers = [replace(i, layer) for i, layer in enumerate(model.layers)]
    return models.Sequential(layers, loss=model.spec()["loss"], input_shape=model.input_shape)


def batch_norm_bug(case, rate, mode):
    """(O16) ``mode="eval"``: every batch-norm layer a fixed affine map (running statistics 0 and 1);
    (O17) ``mode="detached"``: the batch statistics constants for every derivative. Both in the inner
    loop and the query loss."""
    from .bug_layers import FixedStatistics

    found = cases.batch_norm_layers(case.model)
    if not found:
        return []
    changed = _rebuilt(case.model, lambda i, layer: FixedStatistics(layer, mode) if i in found else layer)
    return [_meta(case, rate, model=changed)]


def support_statistics_at_query(case, rate):
    """(O24): every task's query set normalised, in each batch-norm layer, with the statistics of
    the last support batch its inner loop saw (the support set at ``theta_{K-1}``; with ``K = 0`` the
    initial mean 0 and variance 1), held constant: what running statistics with momentum 1 give when
    the query is evaluated in eval mode. The variance as PyTorch's running variance keeps it
    (unbiased, ``N / (N - 1)`` times the batch's) and biased."""
    from .bug_layers import FixedStatistics

    model = models.get(case.model)
    found = cases.batch_norm_layers(model)
    if not found:
        return []

    def statistics(theta, X, unbiased):
        _, cache = model.network.forward(theta[None], X[None])
        out = {}
        for i in found:
            a = np.asarray(cache[1][i])
            axes = (0, 1) + tuple(range(3, a.ndim))
            count = a.size // a.shape[2]
            var = np.var(a, axis=axes)
            out[i] = (np.mean(a, axis=axes), var * count / (count - 1) if unbiased and count > 1 else var)
        return out

    answers = []
    for unbiased in (True, False):
        def query(t, path, unbiased=unbiased):
            if case.inner_steps:
                stats = statistics(path[case.inner_steps - 1, t], case.Xs[t], unbiased)
            else:
                stats = {i: (np.zeros(model.layers[i].channels), np.ones(model.layers[i].channels)) for i in found}
            fixed = _rebuilt(model, lambda i, layer: FixedStatistics(layer, "given", *stats[i]) if i in found
                             else layer)
            end = path[case.inner_steps, t]
            return fixed.loss(end, case.Xq[t], case.yq[t]), fixed.grad(end, case.Xq[t], case.yq[t])
        found_answer = unrolled(case, rate, query=query)
        answers.append(Answer(found_answer.loss, found_answer.grad, found_answer.lr_grad,
                              "unbiased variance (PyTorch's running_var)" if unbiased else "biased variance"))
    return answers


def _last_parameter_layer(model):
    return max(i for i, layer in enumerate(model.layers) if layer.param_shapes)


def _bias_mask(model):
    """True on the parameters PyTorch names ``bias``: the second parameter of ``Linear``,
    ``Conv2d`` and the batch-norm layers (beta)."""
    out, offset = [], 0
    for layer in model.layers:
        kind = layer.spec().get("layer")
        for j, shape in enumerate(layer.param_shapes):
            size = int(np.prod(shape))
            out.append(np.full(size, j == 1 and kind in ("Linear", "Conv2d", "BatchNorm2d", "BatchNorm1d")))
            offset += size
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def adapted_parts(case, rate, which):
    """(O18): the inner loop adapting other parameters than the check's mask says:
    ``"all"`` every parameter (where the mask adapts a part), ``"head"`` only the last layer with
    parameters (where all should adapt), ``"weights"`` the mask without the biases."""
    model = models.get(case.model)
    if model.linear:
        return []
    full = np.ones(case.theta.shape, dtype=bool)
    mask = full if case.mask is None else np.asarray(case.mask)
    if which == "all":
        chosen = full if not mask.all() else None
    elif which == "head":
        head = np.asarray(model.mask(_last_parameter_layer(model)))
        chosen = head if mask.all() and not head.all() else None
    else:
        chosen = mask & ~_bias_mask(model)
        chosen = chosen if chosen.any() and not np.array_equal(chosen, mask) else None
    if chosen is None:
        return []
    return [_meta(case, rate, mask=None if chosen.all() else chosen)]


def pool_cut_product(model, theta, X, y, w, l2):
    """(O20): the support Hessian-vector product as reverse-over-reverse differentiation computes it
    when max-pooling's backward pass ``delta_a = S^T delta_b`` is a constant for the second
    derivative (the gradient rule that returns zero for its incoming gradient ``delta_b``):

    ``H~^T w = H (w on the parameters above the last max-pool) + sum_s Hess(<c_s, a_s>) (w on segment s)
    + l2 w``, with ``a_s`` the input of the max-pool above segment ``s`` and ``c_s`` its adjoint,
    held constant."""
    from array_api_compat import array_namespace

    from ..models.sequential import Layered

    network = model.network
    th, Xb = theta[None], X[None]
    xp = array_namespace(Xb)
    labels = model.labels(xp, "cpu", y, X, theta.shape, np.float64, "ys")[None]
    z, cache = network.forward(th, Xb)
    r, _ = model.head.residual(z, labels)
    _, deltas = network.vjp(cache, r)
    offsets, offset = [], 0
    for layer in network.layers:
        offsets.append(offset)
        offset += sum(int(np.prod(s)) for s in layer.param_shapes)
    pools = [i for i, layer in enumerate(network.layers)
             if layer.spec().get("layer") == "MaxPool2d" and network.need_input[i]]
    n = X.shape[0]
    top = offsets[pools[-1]]
    above = np.zeros_like(w)
    above[top:] = w[top:]
    out = np.array(model.grad_hvp(th, Xb, labels, 0.0)[1](above[None])[0])
    start = 0
    for p in pools:
        end = offsets[p]
        if end > start:
            sub = Layered(network.layers[:p], network.input_shape, squeeze=False)
            v = np.zeros((1, end))
            v[0, start:end] = w[start:end]
            _, sub_cache = sub.forward(th[:, :end], Xb)
            _, adjoints = sub.vjp(sub_cache, deltas[p - 1])
            _, tangents = sub.jvp(sub_cache, v)
            out[:end] += np.asarray(sub.r_vjp(sub_cache, adjoints, tangents, np.zeros_like(deltas[p - 1]), True))[0] / n
        start = end
    return out + l2 * w


def maxpool_no_second_order(case, rate):
    """(O20): the reverse steps of (M6) with :func:`pool_cut_product` in place of ``H_s``."""
    model = models.get(case.model)
    if case.inner_steps < 1 or model.linear or not any(
            layer.spec().get("layer") == "MaxPool2d" and need
            for layer, need in zip(model.network.layers, model.network.need_input, strict=True)):
        return []
    return [unrolled(case, rate, product=lambda theta, X, y, w: pool_cut_product(model, theta, X, y, w, case.l2))]


LAYOUTS = {  # (O21): the flags of each layout, and how it is said
    "bias_first": "bias before weight in each layer",
    "in_out": "weights read as (in, out) (convolution kernels as (kh, kw, in, out))",
    "reversed": "layers in reverse order (the last layer's parameters first)",
}


def layout_index(model, bias_first=False, in_out=False, reversed_layers=False):
    """(O21): ``sigma`` with ``theta_pytorch = v[sigma]`` when a flat vector ``v`` is read in the
    layout the flags describe: per layer (in reverse order with ``reversed_layers``) the bias before
    the weight (``bias_first``), weights ``(in, out)`` and kernels ``(kh, kw, in, out)``
    (``in_out``)."""
    model = models.get(model)
    blocks, offset = [], 0   # per layer: [(start, shape, kind), ...] in PyTorch's order
    for layer in model.layers:
        kind = layer.spec().get("layer")
        block = []
        for shape in layer.param_shapes:
            block.append((offset, tuple(shape), kind))
            offset += int(np.prod(shape))
        blocks.append(block)
    sigma = np.empty(offset, dtype=np.int64)
    position = 0
    order = [b for b in (reversed(blocks) if reversed_layers else blocks) if b]
    for block in order:
        parts = list(block)
        if bias_first and len(parts) == 2:
            parts = parts[::-1]
        for start, shape, kind in parts:
            size = int(np.prod(shape))
            pt = np.arange(start, start + size).reshape(shape)   # PyTorch positions of this parameter
            if in_out and len(shape) == 2:
                stored = pt.T                                   # (in, out)
            elif in_out and len(shape) == 4:
                stored = np.transpose(pt, (2, 3, 1, 0))        # (kh, kw, in, out)
            else:
                stored = pt
            sigma[stored.reshape(-1)] = np.arange(position, position + size)
            position += size
    return sigma


def layout(case, rate):
    """(O21): the truth for a user who reads ``theta`` (and the rates) in another layout and returns
    the gradients in it: loss ``F(v[sigma])``, gradient scattered back, ``g_v[sigma] = grad F``."""
    model = models.get(case.model)
    if model.linear or not hasattr(model, "layers"):
        return []
    out, seen = [], set()
    for flags in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)):
        sigma = layout_index(model, *map(bool, flags))
        key = sigma.tobytes()
        if np.array_equal(sigma, np.arange(sigma.size)) or key in seen:
            continue
        seen.add(key)
        arr = np.ndim(rate) > 0
        a = _meta(case, rate, theta=case.theta[sigma], lr=np.asarray(rate)[sigma] if arr else None)
        grad = np.empty_like(a.grad)
        grad[sigma] = a.grad
        lr_grad = a.lr_grad
        if arr:
            lr_grad = np.empty_like(a.lr_grad)
            lr_grad[sigma] = a.lr_grad
        note = ", ".join(LAYOUTS[name] for name, on in zip(LAYOUTS, flags, strict=True) if on)
        out.append(Answer(a.loss, grad, lr_grad, note))
    return out


def _finite_only(make):
    """A bug's answers, without those that overflow: a bug whose inner loop diverges on a case (a
    summed support loss's step ``n alpha`` through a network) has no finite answer to match there."""
    try:
        found = make()
    except (ValueError, FloatingPointError, OverflowError):
        return []
    return [a for a in found if np.isfinite(a.loss) and np.all(np.isfinite(a.grad))
            and (a.lr_grad is None or np.all(np.isfinite(a.lr_grad)))]


_CACHE = {}
_CACHE_SIZE = 256


def _key(case, rate, lr_grad):
    import hashlib

    h = hashlib.sha256()
    for a in (case.theta, case.Xs, case.ys, case.Xq, case.yq, np.asarray(rate)):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(b"" if case.mask is None else np.packbits(case.mask).tobytes())
    return (case.id, case.inner_steps, case.l2, bool(lr_grad), json.dumps(models.get(case.model).spec(),
                                                                          sort_keys=True), h.hexdigest())


def wrong(case, rate, *, lr_grad):
    """``{diagnosis: [Answer, ...]}``: the answers each diagnosed bug gives on ``case`` (O1)-(O6),
    (O9)-(O10), (O14)-(O21); remembered for the last few cases (the separation and the judging of a
    check ask for the same ones)."""
    key = _key(case, rate, lr_grad)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _wrong(case, rate, lr_grad=lr_grad)
    return _CACHE[key]


def _wrong(case, rate, *, lr_grad):
    right = truth(case, rate)
    K = case.inner_steps
    makers = {
        "first_order": lambda: [first_order(case, rate)],
        "drift": lambda: drift(case, rate),
        "sum_over_tasks": lambda: [right.scaled(case.T, case.T, case.T)],
        "sum_over_examples": lambda: _sum_over_examples(case, rate),
        "steps_minus_one": lambda: [_meta(case, rate, steps=K - 1)] if K >= 1 else [],
        "steps_plus_one": lambda: [_meta(case, rate, steps=K + 1)],
        "inner_on_query": lambda: [_meta(case, rate, Xs=case.Xq, ys=case.yq)],
        "meta_loss_on_support": lambda: [_meta(case, rate, Xq=case.Xs, yq=case.ys)],
        # (O5): the rate outside the graph, its gradient zero
        "lr_no_grad": lambda: [Answer(right.loss, right.grad, np.zeros_like(right.lr_grad))] if lr_grad else [],
        "tutorial_code": lambda: tutorial_code(case, rate),
        # (O9): the ridge term in the query loss too; l2 ||theta||^2 (no 1/2) in the support loss
        "l2_on_query": lambda: [unrolled(case, rate, query_l2=case.l2)] if case.l2 else [],
        "l2_without_half": lambda: [_meta(case, rate, l2=2 * case.l2)] if case.l2 else [],
        # (O10): every reverse step with the support Hessian at the last iterate; linear regression's
        # Hessian is constant, and there this is the truth
        "hessian_at_last_iterate": lambda: [unrolled(case, rate, hessian_at_last=True)]
        if K >= 1 and not models.get(case.model).constant_curvature else [],
        "support_query_swapped": lambda: [_meta(case, rate, Xs=case.Xq, ys=case.yq, Xq=case.Xs, yq=case.ys)],
        "broadcast_targets": lambda: broadcast_targets(case, rate),
        "half_mse": lambda: half_mse(case, rate),
        "mse_sum_over_outputs": lambda: mse_sum_over_outputs(case, rate),
        "bn_eval_statistics": lambda: batch_norm_bug(case, rate, "eval"),
        "bn_detached_statistics": lambda: batch_norm_bug(case, rate, "detached"),
        "all_adapted": lambda: adapted_parts(case, rate, "all"),
        "head_only_adapted": lambda: adapted_parts(case, rate, "head"),
        "biases_not_adapted": lambda: adapted_parts(case, rate, "weights"),
        "maxpool_no_second_order": lambda: maxpool_no_second_order(case, rate),
        "layout": lambda: layout(case, rate),
        "bn_support_statistics_at_query": lambda: support_statistics_at_query(case, rate),
    }
    assert tuple(makers) == DIAGNOSES
    with np.errstate(over="ignore", invalid="ignore"):
        return {key: _finite_only(make) for key, make in makers.items()}
