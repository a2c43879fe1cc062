"""``refmaml explain``: one meta-gradient walked through with its numbers, each with its equation.

One small task (defaults: d = 2 features, n = 3 support and m = 2 query examples, K = 2 inner
steps), its inputs rounded to two decimals so that a student can redo every line with a pen. The
walk-through recomputes each quantity from the public functions of the models (the gradient, the
Hessian-vector product, the outputs and residuals of the model protocol) and checks the answer
against ``refmaml.meta_value_and_grad`` and against the complex-step derivative of the unrolled
loss (``derivations/checks.md`` (D2)).

* forward, ``k = 0..K``: ``theta_k``, the outputs (logits) ``z_k``, the residuals (or the
  probabilities, for softmax) and ``grad L_s(theta_k)``; ``theta_{k+1} = theta_k - alpha_k grad``
  (``derivations/maml.md`` (M2), ``derivations/variants.md`` (V1));
* the query loss and ``g_K = grad L_q(theta_K)`` (M3), (M8);
* reverse, ``k = K-1..0``: the HVP ``H_s(theta_k)(alpha_k g_{k+1})`` and
  ``g_k = g_{k+1} - HVP`` (M6), (V2); with array rates the rate gradient
  ``-g_{k+1} * grad L_s(theta_k)`` (V3), (V4);
* the meta-gradient ``g_0``, the first-order one ``g_K`` beside it, and the checks;
* for a network of layers with ``--layers`` (the default of ``--model conv``: one 1x4x4 image
  channel, a 2x2 convolution, batch norm, ReLU, 2x2 max-pooling, two classes), the support set's
  pass at ``theta_0`` layer by layer:
  each layer's parameters and output (``derivations/models.md`` (H8)), then, from the top, the
  adjoint of each output and each layer's parameter gradient (H9), each with its layer's equations.
"""

import json
import textwrap

import numpy as np

from . import _validate, _xp, adapt, check, dual, instances, meta_value_and_grad, models, policy, problem as validated
from .maml import sum_to_rate

RATES = ("scalar", "per-step", "per-parameter")


def tiny_conv():
    """The walk-through's image network: one 1x4x4 channel, a 2x2 convolution (one output channel),
    batch norm, ReLU, 2x2 max-pooling and a linear layer to two classes (11 parameters)."""
    L = models.layers
    return models.Sequential([L.Conv2d(1, 1, 2), L.BatchNorm2d(1), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
                              L.Linear(1, 2)], loss="softmax", input_shape=(1, 4, 4))


LIMITS = dict(features=100, support=1000, query=1000, steps=100, parameters=10_000)
"""The walk-through prints every number it computes: it takes at most these sizes."""


def _count(value, name, flag, minimum, maximum):
    """An integer in ``[minimum, maximum]``, or a ValueError naming the argument and its flag."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} ({flag}) must be an integer; got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} ({flag}) must be an integer from {minimum} to {maximum}; got {value}")
    return int(value)


def _sizes(sizes):
    """``sizes`` as a tuple of widths: a sequence, or the command line's text ``"2,3,1"``."""
    if isinstance(sizes, str):
        parts = sizes.split(",")
        if not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"sizes (--sizes) must be layer widths separated by commas, such as 2,3,1; got {sizes!r}")
        sizes = tuple(int(p) for p in parts)
    sizes = tuple(sizes)
    for width in sizes:
        _count(width, "each layer width in sizes", "--sizes", 1, LIMITS["parameters"])
    return sizes


def problem(model=None, *, features=2, support=3, query=2, steps=2, inner_lr=0.5, l2=0.0, seed=0,
            rates="scalar", sizes=None, activation=None, loss=None):
    """The walk-through's inputs: ``(model object, name, inputs dict)``, seeded, two decimals.

    ``model`` is a registered name (default ``"logistic"``), ``"conv"`` (:func:`tiny_conv`) or a
    model object; ``sizes`` (with ``activation``, default ``"tanh"``, and ``loss``, default
    ``"mse"``) takes the MLP preset instead, and ``activation`` and ``loss`` apply to it alone. A
    linear model gets ``features`` features (and 3 classes for softmax); a network's parameters are
    its initialisation ``init(seed)``. The sizes are bounded by :data:`LIMITS`; every refusal names
    the argument and its command-line flag."""
    if sizes is not None and model is not None:
        raise ValueError(f"model (--model {model}) and sizes (--sizes) name two models: give one")
    if sizes is None and (activation is not None or loss is not None):
        flag = "activation (--activation)" if activation is not None else "loss (--loss)"
        raise ValueError(f"{flag} applies to a network given by sizes (--sizes) only")
    features = _count(features, "features", "--features", 1, LIMITS["features"])
    support = _count(support, "support", "--support", 1, LIMITS["support"])
    query = _count(query, "query", "--query", 1, LIMITS["query"])
    steps = _count(steps, "steps", "--steps", 0, LIMITS["steps"])
    seed = _count(seed, "seed", "--seed", 0, 2**63 - 1)
    if not isinstance(rates, str) or rates not in RATES:
        raise ValueError(f"rates (--rates) must be one of {', '.join(RATES)}; got {rates!r}")
    if rates == "per-step" and steps == 0:
        raise ValueError("rates (--rates) per-step give one rate per inner step: steps (--steps) must be at least 1")
    inner_lr = _validate.real_number(inner_lr, "inner_lr (--inner-lr)")
    l2 = _validate.nonnegative(l2, "l2 (--l2)")
    largest = np.finfo(np.float64).max / 150  # drawn up to 1.5 times, then rounded to two decimals (x 100)
    if rates != "scalar" and not abs(inner_lr) <= largest:
        raise ValueError(f"inner_lr (--inner-lr) must be at most {largest:.3g} in magnitude with --rates {rates}: "
                         f"the rates are drawn from 0.5 to 1.5 times it and rounded; got {inner_lr}")
    if sizes is not None:
        sizes = _sizes(sizes)
        size = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
        if size > LIMITS["parameters"]:
            raise ValueError(f"sizes (--sizes) {sizes} make {size} parameters; the walk-through prints every one "
                             f"and takes at most {LIMITS['parameters']}")
        activation, loss = activation or "tanh", loss or "mse"
    model = "logistic" if model is None else model
    rng = np.random.default_rng(seed)
    if sizes is not None:
        obj = models.MLP(sizes, activation, loss)
    else:
        obj = tiny_conv() if model == "conv" else models.get(model)
    shape = obj.parameter_shape(features, 3)
    if obj.linear:
        theta = np.round(obj.random_parameters(rng, shape, 0.5), 2)
    else:
        theta = np.round(obj.init(seed), 2)
    d, outputs = obj.dimensions(shape)
    example = tuple(d) if isinstance(d, tuple) else (d,)
    name = obj.name if obj.linear else repr(obj)

    def targets(size):
        y = instances.targets(rng, obj, (size,), outputs)
        return np.round(np.reshape(y, (size,) + tuple(outputs)), 2) if obj.targets == "real" else y

    Xs = np.round(rng.standard_normal((support,) + example), 2)
    Xq = np.round(rng.standard_normal((query,) + example), 2)
    ys, yq = targets(support), targets(query)
    if rates == "scalar":
        rate = float(inner_lr)
    elif rates == "per-step":
        rate = np.round(inner_lr * (0.5 + rng.random((steps,) + (1,) * len(shape))), 2)
    else:
        rate = np.round(inner_lr * (0.5 + rng.random(shape)), 2)
    inputs = dict(theta=theta, Xs=Xs, ys=ys, Xq=Xq, yq=yq, inner_lr=rate, inner_steps=int(steps), l2=float(l2),
                  model=name)
    return obj, name, inputs


def _rate(rate, k, ndim):
    return rate[k] if np.ndim(rate) == ndim + 1 else rate


def gram_form(obj, inputs, *, first_order=False):
    """The same meta-gradient in the dual (Gram) form, ``derivations/dual.md``: the blocks
    ``G = X_s A X_s^T``, ``M = X_q A X_s^T`` (G3), (G5), ``Z_0 = X_s theta``, ``U_0 = X_q theta``, the
    forward coefficients ``(Gamma_k, c_k)`` of (G2) and the reverse ones ``(E_k, xi_k)`` of (G4), and
    ``g = xi X_q^T B + X_s^T E`` (G6); arrays in matrix form (a trailing output axis)."""
    p = validated.meta(obj, inputs["theta"], inputs["Xs"], inputs["ys"], inputs["Xq"], inputs["yq"],
                       l2=inputs["l2"], inner_lr=inputs["inner_lr"], inner_steps=inputs["inner_steps"])
    policy.plan(p, "dual")  # refuses what the dual form cannot take, with the reason
    record = {}
    _, g, _ = dual.value_and_grad(p, first_order=first_order, record=record)
    one = obj.network.from_matrix  # one output per example: the coefficients as vectors

    return {"G": record["G"][0], "M": record["M"][0], "Z0": one(record["Z0"][0]), "U0": one(record["U0"][0]),
            "forward": [{"k": k, "Gamma": one(Gam[0]), "c": float(np.real(c))} for k, (Gam, c) in enumerate(record["forward"])],
            "reverse": [{"k": k, "E": one(E[0]), "xi": float(np.real(b))} for k, E, b in record["reverse"]],
            "meta_grad": g[0], "equation": "dual.md (G2)-(G6)"}


def layer_by_layer(obj, theta, X, y, v):
    """The support set's pass at ``theta`` through a network of layers, for every layer: its name,
    parameters and output (H8), the adjoint of its output and its parameter gradient (H9), and for
    the Hessian-vector product along ``v`` (the first reverse step's vector) the tangent of its
    output (R-forward, (H10)), ``R{delta}`` of its output and its block of ``R{J^T r}`` (R-backward,
    (H11)), with the layer's equations; the first example's values, and the gradients' and
    products' blocks divided by ``n`` (those of the mean loss). None for a network without layers."""
    layers = getattr(obj.network, "layers", None)
    if layers is None:
        return None
    xp = _xp.NUMPY
    net, n = obj.network, X.shape[0]
    z, cache = net.forward(theta[None], X[None])
    r, c = obj.head.residual(z, obj.labels(xp, "cpu", y, X, theta.shape, np.float64, "ys")[None])
    grad, deltas = net.vjp(cache, r)
    Jv, tangents = net.jvp(cache, v[None])
    record = {}
    net.r_vjp(cache, deltas, tangents, obj.head.curvature(c, Jv), record=record)
    params, inputs, _ = cache

    def example(a):
        return a[..., None] if net.squeeze and a.ndim == 2 else a

    outputs = inputs[1:] + [example(z)]
    dots = tangents[0][1:] + [example(Jv)]
    out = []
    for l, layer in enumerate(layers):
        forward, backward = getattr(layer, "equations", ("models.md (H8)", "models.md (H9)"))
        R_delta, R_grads = record[l]
        out.append({"layer": repr(layer), "parameters": [np.asarray(q[0]) for q in params[l]],
                    "output": outputs[l][0, 0], "adjoint": deltas[l][0, 0] / n,
                    "gradient": [np.asarray(grad[0, a:b]).reshape(shape) / n for a, b, shape in net.blocks[l]],
                    "tangent": dots[l][0, 0], "R_adjoint": R_delta[0, 0] / n,
                    "R_gradient": [np.asarray(g[0]) / n for g in R_grads],
                    "equations": f"forward {forward}, backward {backward}"})
    return out


def walk(obj, name, inputs, *, first_order=False, form="primal", layers=False):
    """:func:`_walk`, whose every number must be finite: the library's calls check their own results, the
    walk-through's own passes (the outputs at each inner iterate) are checked here, without a warning."""
    with _xp.quiet_overflow():
        out = _walk(obj, name, inputs, first_order=first_order, form=form, layers=layers)
    if not _all_finite(out):
        raise ValueError(f"the walk-through's numbers overflow with inner_lr (--inner-lr) {inputs['inner_lr']!r} "
                         f"and {inputs['inner_steps']} steps: use a smaller inner_lr or fewer steps")
    return out


def _all_finite(value):
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    if isinstance(value, (float, complex, np.ndarray, np.generic)) and not isinstance(value, np.bool_):
        a = np.asarray(value)
        return a.dtype.kind not in "fc" or bool(np.all(np.isfinite(a)))
    return True


def _walk(obj, name, inputs, *, first_order=False, form="primal", layers=False):
    """Every quantity of the computation, in order: a JSON-ready dict (see the module docstring):
    the inner loop (M2), the query loss (M3), the reverse pass (M6), (V2), first order (M8), rates (V3)-(V4);
    with ``form="dual"`` also the Gram form (G2)-(G6); with ``layers`` (a network of layers) the support
    set's pass at ``theta_0`` layer by layer (H8), (H9)."""
    eq = obj.equations
    theta, Xs, ys, Xq, yq = (inputs[k] for k in ("theta", "Xs", "ys", "Xq", "yq"))
    rate, K, l2 = inputs["inner_lr"], inputs["inner_steps"], inputs["l2"]
    xp = _xp.NUMPY
    path = np.asarray(adapt(theta, Xs, ys, inner_lr=rate, inner_steps=K, model=obj, l2=l2, return_trajectory=True))
    forward, grads = [], []
    weights = obj.targets == "binary" and obj.linear  # logistic.md's walk-through shows the curvature weights
    for k in range(K + 1):
        z = obj.network.forward(path[k][None], Xs[None])[0][0]
        y = obj.labels(xp, "cpu", ys, Xs, path[k].shape, np.float64, "ys")
        r, c = obj.head.residual(z[None], y[None])
        entry = {"k": k, "theta": path[k], "logits": z}
        if obj.targets == "classes" and obj.linear:  # softmax.md's walk-through shows the probabilities
            entry["probabilities"] = c[0]
        else:
            entry["residuals"] = r[0]
        if weights and k < K:
            entry["weights"] = c[0]
        g = np.asarray(obj.grad(path[k], Xs, ys, l2=l2)) if k < K else None
        entry["grad"] = g
        entry["equation"] = (f"maml.md (M2); outputs {eq['outputs']}, residuals {eq['residual']}, "
                             f"gradient {eq['grad']}") if k < K else f"maml.md (M2): theta_K; outputs {eq['outputs']}"
        forward.append(entry)
        grads.append(g)
    meta_loss = float(np.mean(obj.loss(path[K], Xq, yq)))
    query_outputs = obj.network.forward(path[K][None], Xq[None])[0][0]
    g = np.asarray(obj.grad(path[K], Xq, yq))
    reverse = [{"k": K, "g": g, "hvp": None, "equation": f"maml.md (M6): g_K = grad L_q(theta_K), {eq['grad']}"}]
    rate_grad = np.zeros(np.shape(rate)) if np.ndim(rate) else 0.0
    g_K = g
    ndim = theta.ndim
    for k in reversed(range(K)):
        step = _rate(rate, k, ndim)
        contribution = -(g_K if first_order else g) * grads[k]
        if np.ndim(rate):
            summed = sum_to_rate(xp, contribution[None], np.shape(step))[0]
            if np.ndim(rate) == ndim + 1:
                rate_grad = rate_grad.copy()
                rate_grad[k] = summed
            else:
                rate_grad = rate_grad + summed
        hvp = np.asarray(obj.hvp(path[k], Xs, ys, step * g, l2=l2))
        g = g - hvp
        reverse.append({"k": k, "g": g, "hvp": hvp,
                        "equation": f"maml.md (M6), variants.md (V2): g_k = g_(k+1) - H_s(theta_k)(alpha_k g_(k+1)); "
                                    f"HVP {eq['hvp']}"})
    answer = g_K if first_order else g
    library = meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=rate, inner_steps=K, model=obj, l2=l2,
                                  first_order=first_order, lr_grad=bool(np.ndim(rate)))
    first_vector = _rate(rate, 0, ndim) * (reverse[-2]["g"] if K else g)  # the vector of the HVP at theta_0
    layers = layer_by_layer(obj, theta, Xs, ys, np.broadcast_to(first_vector, theta.shape)) if layers else None
    out = {"inputs": inputs, "forward": forward, "reverse": reverse, "meta_loss": meta_loss,
           "query_outputs": query_outputs, "hvp_equation": eq["hvp"], "linear": obj.linear,
           "rate_equation": "variants.md (V1)" if np.ndim(rate) else "maml.md (M2)",
           "meta_grad": g, "first_order_meta_grad": g_K, "first_order": first_order,
           "library_meta_grad_relative_difference": check.relative_error(library[1], answer)}
    if layers is not None:
        out["layers"] = layers
    if obj.constant_curvature and not first_order and np.isrealobj(rate):
        out["closed_form"] = closed_form(Xs, ys, Xq, yq, rate, K, l2, theta, answer)
    if form == "dual":
        out["dual"] = gram_form(obj, inputs, first_order=first_order)
        out["dual"]["relative_difference"] = check.relative_error(out["dual"]["meta_grad"], answer)
    if np.ndim(rate):
        out["inner_lr_grad"] = rate_grad
        out["inner_lr_grad_equation"] = "variants.md (V3), (V4): -g_(k+1) * grad L_s(theta_k), summed over broadcast axes"
        out["library_inner_lr_grad_relative_difference"] = check.relative_error(library[2], rate_grad)
    if not first_order:
        def unrolled(t):
            theta_K = adapt(t, Xs, ys, inner_lr=rate, inner_steps=K, model=obj, l2=l2)
            return obj.loss(theta_K, Xq, yq)
        cs = np.asarray(check.complex_step_gradient(unrolled, theta))
        out["checks"] = {"complex_step_meta_grad": cs, "relative_error": check.relative_error(g, cs),
                         "equation": "checks.md (D2), (D4)"}
    return out


def closed_form(Xs, ys, Xq, yq, rate, K, l2, theta, answer):
    """Linear regression's inner loop as an affine map, ``theta_K = M theta + c`` (``linear.md``
    (Q4), (Q5)), and the meta-gradient ``M^T grad L_q(theta_K)`` it gives without a reverse pass (Q7),
    beside the walk-through's ``answer``."""
    M, c = models.linear.affine_map(Xs, ys, inner_lr=rate, inner_steps=K, l2=l2)
    g = np.asarray(models.linear.closed_form_meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=rate,
                                                                  inner_steps=K, l2=l2)[1])
    return {"M": np.asarray(M), "c": np.asarray(c), "meta_grad": g,
            "relative_difference": check.relative_error(g, answer)}


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_json(result):
    """One JSON document; every float in Python's shortest round-trip form."""
    return json.dumps(_plain(result), indent=1)


def _fmt(a):
    a = np.asarray(a, dtype=float)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    return np.array2string(a, precision=6, separator=", ", suppress_small=False, max_line_width=64,
                           formatter={"float_kind": lambda v: f"{v + 0.0:.6g}"})  # + 0.0: no "-0"


def to_text(result):
    """The walk-through as lines of text, each quantity with its equation."""
    i, K = result["inputs"], result["inputs"]["inner_steps"]
    lines = [f"MAML meta-gradient of one task, {i['model']}, K = {K} inner steps, inner_lr = {_fmt(i['inner_lr'])} "
             f"[{result['rate_equation']}], l2 = {i['l2']:g}", "", "inputs:"]
    outputs = (lambda k: f"X_s theta_{k}") if result["linear"] else (lambda k: f"f(X_s; theta_{k})")
    for key in ("theta", "Xs", "ys", "Xq", "yq"):
        lines.append(f"  {key} = {_fmt(i[key])}")
    lines += ["", "forward: theta_(k+1) = theta_k - alpha_k grad L_s(theta_k)   [maml.md (M2)]"]
    for f in result["forward"]:
        lines.append(f"  k = {f['k']}:  theta_{f['k']} = {_fmt(f['theta'])}")
        lines.append(f"         outputs {outputs(f['k'])} = {_fmt(f['logits'])}")
        key = "probabilities" if "probabilities" in f else "residuals"
        lines.append(f"         {key} = {_fmt(f[key])}")
        if "weights" in f:
            lines.append(f"         curvature weights p (1 - p) = {_fmt(f['weights'])}   [logistic.md (L10)]")
        if f["grad"] is not None:
            lines.append(f"         grad L_s(theta_{f['k']}) = {_fmt(f['grad'])}   [{f['equation']}]")
    if "layers" in result:
        lines += ["", "the support set at theta_0, layer by layer (first example; adjoints, gradients of the mean "
                      "loss)   [models.md (H8), (H9)]"]
        for l, layer in enumerate(result["layers"]):
            lines.append(f"  layer {l}: {layer['layer']}   [{layer['equations']}]")
            for j, q in enumerate(layer["parameters"]):
                lines.append(f"    parameter {j} = {_fmt(q)}")
            lines.append(f"    output = {_fmt(layer['output'])}")
        lines.append("  backward, from the top:")
        for l in reversed(range(len(result["layers"]))):
            layer = result["layers"][l]
            lines.append(f"  layer {l}: adjoint of its output = {_fmt(layer['adjoint'])}")
            for j, q in enumerate(layer["gradient"]):
                lines.append(f"    gradient of parameter {j} = {_fmt(q)}")
        lines.append("  the HVP at theta_0 along v = alpha_0 g_1 (the reverse pass's last), R-forward then "
                     "R-backward   [models.md (H10), (H11)]")
        for l, layer in enumerate(result["layers"]):
            lines.append(f"  layer {l}: tangent of its output R{{a}} = {_fmt(layer['tangent'])}")
        for l in reversed(range(len(result["layers"]))):
            layer = result["layers"][l]
            lines.append(f"  layer {l}: R{{adjoint}} of its output = {_fmt(layer['R_adjoint'])}")
            for j, q in enumerate(layer["R_gradient"]):
                lines.append(f"    R{{gradient}} of parameter {j} (block of H v, l2 aside) = {_fmt(q)}")
    lines += ["", f"query outputs {outputs('K').replace('X_s', 'X_q')} = {_fmt(result['query_outputs'])}",
              f"query loss L_q(theta_K) = {_fmt(result['meta_loss'])}   [maml.md (M3)]"]
    dropped = " (dropped by first-order MAML)" if result["first_order"] else ""
    lines += ["", f"reverse: g_k = g_(k+1) - H_s(theta_k)(alpha_k g_(k+1))   [maml.md (M6), variants.md (V2)]{dropped}"]
    for r in result["reverse"]:
        if r["hvp"] is None:
            lines.append(f"  k = {r['k']}:  g_{r['k']} = grad L_q(theta_K) = {_fmt(r['g'])}   [maml.md (M6)]")
        else:
            lines.append(f"  k = {r['k']}:  H_s(theta_{r['k']})(alpha g_{r['k'] + 1}) = {_fmt(r['hvp'])}   "
                         f"[HVP {result['hvp_equation']}]")
            lines.append(f"         g_{r['k']} = {_fmt(r['g'])}")
    answer = "first_order_meta_grad" if result["first_order"] else "meta_grad"
    lines += ["", f"meta-gradient g_0 = {_fmt(result['meta_grad'])}" + ("" if result["first_order"] else "   <- the answer"),
              f"first-order g_K   = {_fmt(result['first_order_meta_grad'])}   [maml.md (M8)]"
              + ("   <- the answer" if result["first_order"] else "")]
    if "inner_lr_grad" in result:
        lines.append(f"rate gradient     = {_fmt(result['inner_lr_grad'])}   [{result['inner_lr_grad_equation']}]")
    if "dual" in result:
        g = result["dual"]
        lines += ["", "the same in the Gram form (n-dimensional coefficients)   [dual.md (G2)-(G6)]",
                  f"  calG = X_s A X_s^T = {_fmt(g['G'])}   [(G3), (G5)]",
                  f"  calM = X_q A X_s^T = {_fmt(g['M'])}   [script G and M of dual.md, not linear.md's M]",
                  f"  Z_0 = X_s theta = {_fmt(g['Z0'])},  U_0 = X_q theta = {_fmt(g['U0'])}"]
        for f in g["forward"]:
            lines.append(f"  k = {f['k']}:  Gamma_{f['k']} = {_fmt(f['Gamma'])},  c_{f['k']} = {f['c']:.6g}   [(G2)]")
        for r in g["reverse"]:
            lines.append(f"  k = {r['k']}:  E_{r['k']} = {_fmt(r['E'])},  xi_{r['k']} = {r['xi']:.6g}   [(G4)]")
        lines.append(f"  g = xi X_q^T B + X_s^T E = {_fmt(g['meta_grad'])}   [(G6)]; relative difference with the "
                     f"primal walk-through {g['relative_difference']:.1e}")
    if "closed_form" in result:
        cf = result["closed_form"]
        lines += ["", "the same without a reverse pass: the inner loop is affine, theta_K = M theta + c   "
                      "[linear.md (Q4), (Q5)]",
                  f"  M = {_fmt(cf['M'])}", f"  c = {_fmt(cf['c'])}",
                  f"  M^T grad L_q(theta_K) = {_fmt(cf['meta_grad'])}   [linear.md (Q7)]; relative difference "
                  f"{cf['relative_difference']:.1e}"]
    lines.append(f"refmaml.meta_value_and_grad agrees: relative difference "
                 f"{result['library_meta_grad_relative_difference']:.1e} ({answer})")
    if "checks" in result:
        c = result["checks"]
        lines.append(f"complex step of the unrolled loss  = {_fmt(c['complex_step_meta_grad'])}")
        lines.append(f"relative error of g_0 against it   = {c['relative_error']:.1e}   [checks.md (D2), (D4)]")
    return _layout(lines)


WIDTH = 100  # columns of the text output; a longer line puts its equation on the next line


def _layout(entries):
    """The lines of :func:`to_text`: a matrix's rows under its first row, and a line longer than
    :data:`WIDTH` with its equation (the trailing ``   [...]``) moved to a line of its own."""
    out = []
    for entry in entries:
        first, *rest = entry.split("\n")
        if rest:  # np.array2string's further rows, aligned under the array's opening bracket
            pad = " " * max(first.rfind("= [") + 2, 0)
            rest = [pad + row if row.strip() else "" for row in rest]
        for line in (first, *rest):
            cut = line.rfind("   [")
            if len(line) > WIDTH and line.startswith("MAML meta-gradient of one task, "):  # the header
                head, _, tail = line.partition(", K = ")
                out += textwrap.wrap(head + ",", WIDTH, subsequent_indent="  ", break_on_hyphens=False)
                out.append("K = " + tail)
            elif len(line) <= WIDTH or cut <= 0:
                out.append(line)
            else:
                cite = line[cut + 3:]
                indent = min(len(line) - len(line.lstrip()) + 4, max(WIDTH - len(cite), 2))
                out += [line[:cut], " " * indent + cite]
    return "\n".join(out)
