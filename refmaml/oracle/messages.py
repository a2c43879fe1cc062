"""What the oracle says: each named bug's ``(what, likely cause, fix)`` (``MESSAGES``), the hints a
failure confined to one kind of case gives (``HINTS``), and the verdict in words (:func:`explain`,
:func:`incomplete`)."""

from . import cases
from .judge import FLOAT32_BAND, localize

MESSAGES = {
    "l2_on_query": (
        "the query loss carries the ridge term too: the meta-loss is the mean of L_q(theta_K) + "
        "(l2/2)||theta_K||^2",
        "the same regularised loss function used for the inner steps and for the meta-loss",
        "regularise the support loss only; the meta-loss is the plain query loss (maml.md (M3), oracle.md (O9))"),
    "l2_without_half": (
        "the support loss's ridge term is l2 ||theta||^2 instead of (l2/2)||theta||^2: its gradient is "
        "2 l2 theta",
        "the ridge term written without the 1/2 (or weight decay of 2 l2)",
        "add (l2/2)||theta||^2, whose gradient is l2 theta (logistic.md, oracle.md (O9))"),
    "hessian_at_last_iterate": (
        "every reverse step multiplies by (I - alpha H_s(theta_K)), the support Hessian at the last "
        "iterate, instead of at the iterate theta_k of that step",
        "the Hessian-vector products of the backward pass evaluated at the adapted parameters, not at "
        "the stored trajectory",
        "keep the trajectory theta_0..theta_K and take step k's Hessian at theta_k (maml.md (M6), "
        "oracle.md (O10))"),
    "first_order": (
        "the meta-gradient is first-order MAML: the Hessian terms (I - alpha H) of the inner steps are "
        "missing",
        "the inner gradients were computed without keeping their graph (in PyTorch, torch.autograd.grad "
        "without create_graph=True, or parameters updated through .data, detach() or an optimizer's step)",
        "differentiate through the inner loop: grad(..., create_graph=True) and adapted parameters that "
        "are functions of theta (maml.md (M5)-(M6))"),
    "drift": (
        "each task starts from the parameters the previous task ended with, not from theta",
        "the adapted parameters were written back into the model (an in-place update, or theta = theta_K "
        "inside the loop over tasks)",
        "start every task's inner loop from the same theta; keep adapted parameters in a separate, "
        "per-task variable (maml.md (M2))"),
    "sum_over_tasks": (
        "the meta-loss and its gradient are sums over tasks where refmaml takes the mean",
        "the query losses were added up over the batch and not divided by the number of tasks",
        "divide by the number of tasks, or compare with reduction='sum' (maml.md (M3)-(M4))"),
    "sum_over_examples": (
        "losses are sums over examples where refmaml takes the mean: the inner step is n times too long, "
        "or the query loss m times too large",
        "a loss with reduction='sum' (or a sum written out) in the support or query loss",
        "average over examples (reduction='mean'); a summed support loss at rate alpha is the mean at "
        "rate n * alpha (logistic.md (L2), seed-errata.md 3.2b)"),
    "steps_minus_one": (
        "the inner loop takes K - 1 steps instead of K",
        "an off-by-one in the inner loop (range(1, K), or the first step taken outside the loop and "
        "counted twice)",
        "take exactly inner_steps gradient steps (maml.md (M2))"),
    "steps_plus_one": (
        "the inner loop takes K + 1 steps instead of K",
        "an off-by-one in the inner loop (range(K + 1), or an extra step before the loop)",
        "take exactly inner_steps gradient steps (maml.md (M2))"),
    "inner_on_query": (
        "the inner steps use the query set instead of the support set",
        "support and query swapped in the inner loop",
        "adapt on (Xs, ys), evaluate the meta-loss on (Xq, yq) (maml.md (M1)-(M3))"),
    "meta_loss_on_support": (
        "the meta-loss is evaluated on the support set instead of the query set",
        "support and query swapped in the outer loss",
        "evaluate the adapted parameters on (Xq, yq) (maml.md (M3))"),
    "lr_no_grad": (
        "the learned inner learning rate receives no gradient (it comes back as zero)",
        "the rate is not part of the graph: a Python float, a tensor without requires_grad, or one the "
        "inner update detaches",
        "make the rates a differentiable parameter used in the inner step; its gradient is "
        "-g_{k+1} * grad L_s(theta_k), summed over steps (variants.md (V3)-(V4))"),
    "tutorial_code": (
        "the implementation behaves like the seed tutorial's code: in-place inner steps with an optimizer "
        "on the model's own parameters and a gradient buffer that is never zeroed between tasks",
        "optim.SGD(model.parameters()) and loss.backward() inside the loop over tasks, as in the tutorial's "
        "listing",
        "see derivations/seed-errata.md, items 5.3d-5.3j: copy the parameters per task, differentiate "
        "with create_graph=True, and zero the gradients before the outer step"),
    "support_query_swapped": (
        "support and query sets are swapped: the inner steps use (Xq, yq) and the meta-loss (Xs, ys)",
        "the arguments unpacked in the wrong order (fn(theta, Xq, yq, Xs, ys) or a task tuple read as "
        "(query, support))",
        "adapt on the support set (Xs, ys), the 2nd and 3rd arguments; evaluate on the query set (Xq, yq), the "
        "4th and 5th (maml.md (M1)-(M3), oracle.md (O19))"),
    "broadcast_targets": (
        "the mean squared error compares every output with every target: outputs of shape (n, 1) against "
        "targets of shape (n,) (or the reverse) broadcast to (n, n), which is the mse against the mean target "
        "plus the targets' variance",
        "a network whose last layer is nn.Linear(h, 1) returns (n, 1) while the targets are (n,); "
        "F.mse_loss(out, y) broadcasts them and only warns (\"Using a target size that is different to the input "
        "size\"); with one example per set (1, 1) against (1,) happens to be right",
        "squeeze the outputs' last axis (out.squeeze(-1)) or give the targets one (y[:, None]) so that both "
        "have the same shape (oracle.md (O14))"),
    "half_mse": (
        "the squared error carries a factor 1/2: the loss is (1/2) mean (z - y)^2 where refmaml takes mean "
        "(z - y)^2, PyTorch's mse_loss",
        "the textbook's 1/2 ||r||^2 written with a mean (0.5 * ((out - y) ** 2).mean()), which halves every "
        "inner step and the meta-loss",
        "drop the 1/2: the loss is F.mse_loss(out, y), the mean of the squared errors (oracle.md (O15))"),
    "mse_sum_over_outputs": (
        "the squared errors are summed over each example's outputs and averaged over examples; refmaml "
        "(and mse_loss) averages over both, so the loss and every inner step are d_out times larger",
        "((out - y) ** 2).sum(-1).mean() or .sum(dim=1).mean(), the per-example squared norm",
        "average over every entry: F.mse_loss(out, y) or ((out - y) ** 2).mean() (oracle.md (O15))"),
    "bn_eval_statistics": (
        "batch norm normalises with fixed statistics (mean 0, variance 1), not with those of the set being "
        "evaluated: every batch-norm layer is the affine map gamma a / sqrt(1 + eps) + beta",
        "nn.BatchNorm2d with track_running_stats=True (the default) evaluated after model.eval(): its running "
        "mean and variance are still 0 and 1",
        "use nn.BatchNorm2d(C, track_running_stats=False) (or keep the module in train mode): statistics of "
        "the support set at every inner step and of the query set for the query loss (batchnorm.md (B1), "
        "oracle.md (O16))"),
    "bn_detached_statistics": (
        "batch norm's mean and variance are treated as constants in the backward pass: the forward pass is "
        "right, the gradients miss the terms that differentiate the statistics",
        "the statistics computed under torch.no_grad(), with .detach(), or taken from buffers",
        "compute mean and variance in the graph (F.batch_norm(x, None, None, weight, bias, training=True)); "
        "their derivatives are the projection P of batchnorm.md (B2)-(B3), oracle.md (O17)"),
    "all_adapted": (
        "the inner loop adapts every parameter; the check's inner_mask adapts only part of them (the others "
        "are meta-only: they move in the outer loop alone)",
        "the inner step written over all of model.parameters() where it should take only the adapted ones "
        "(ANIL: the head)",
        "apply the inner step to the masked parameters only, theta_k+1 = theta_k - alpha * mask * grad "
        "(maml.md (M10), oracle.md (O18))"),
    "head_only_adapted": (
        "the inner loop adapts only the last layer's parameters; every parameter should adapt",
        "an ANIL-style loop (the inner step on the head only) used for MAML, or the body's parameters "
        "left out of the list given to torch.autograd.grad",
        "adapt every parameter in the inner loop, or check with inner_mask=net.mask(-1) if ANIL is meant "
        "(maml.md (M10), oracle.md (O18))"),
    "biases_not_adapted": (
        "the inner loop adapts the weights but not the biases (PyTorch's parameters named 'bias', batch "
        "norm's beta included)",
        "the adapted parameters chosen by name ('weight' in name), or only the weights passed to "
        "torch.autograd.grad",
        "adapt every parameter the mask names, biases included (maml.md (M10), oracle.md (O18))"),
    "maxpool_no_second_order": (
        "the second-order signal stops at max-pooling: its backward pass is a constant for the second "
        "derivative, as with the gradient rule of cbfinn/maml's special_grads.py (zero for the incoming "
        "gradient)",
        "a custom max-pool gradient whose backward detaches its incoming gradient (or a framework rule for "
        "MaxPoolGrad's own gradient that returns zero for it)",
        "use the framework's max-pool (PyTorch's and JAX's differentiate its backward pass): the "
        "second-order rule is S^T R{delta} (conv.md (C11), oracle.md (O20))"),
    "bn_support_statistics_at_query": (
        "the query set is normalised with the statistics of the last support batch (the support set at "
        "theta_K-1), held constant, not with its own",
        "nn.BatchNorm2d with running statistics and momentum=1.0, trained on the support set and switched to "
        "eval() for the query (or statistics cached from the last support pass)",
        "normalise every set with its own statistics: nn.BatchNorm2d(C, track_running_stats=False) in train "
        "mode for the query too (batchnorm.md (B1), oracle.md (O24))"),
    "layout": (
        "the answers are refmaml's with theta read in another layout",
        "the flat vector unpacked in an order that is not PyTorch's parameters_to_vector order",
        "read theta with torch.nn.utils.vector_to_parameters(theta, model.parameters()) and return "
        "parameters_to_vector(grads): per layer the weight (out, in) row-major (convolution kernels "
        "(out, in, kh, kw)), then the bias, layers first to last (oracle.md (O21))"),
}


def _ids(names, limit=4):
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


HINTS = {  # what a failure confined to one kind of case points at, most specific first
    "inner_steps>=2": "only cases with K >= 2 inner steps fail: look at state carried between inner steps "
                      "(an inner gradient computed once and reused, a buffer or optimizer state not reset, "
                      "the Hessian of the wrong step)",
    "inner_steps>=1": "only cases with at least one inner step fail: look at the inner loop and at what the "
                      "meta-gradient does through it",
    "tasks>=2": "only cases with several tasks fail: look at state carried between tasks (parameters or "
                "gradients not reset, a reduction over the batch)",
    "l2>0": "only cases with l2 > 0 fail: look at the ridge term; refmaml's support loss carries "
            "(l2/2)||theta||^2 (gradient l2 theta, Hessian l2 I) and the query loss none",
    "saturated": "only the saturated cases fail: look at numerical stability (losses through softplus or "
                 "log-sum-exp, not log(sigmoid(z)) or log(softmax(z)))",
    "one_example": "only the cases with one example per set fail: look at shapes that collapse when n = 1 "
                   "(a squeeze(), a mean over the wrong axis)",
    "lr_array": "only the cases with one rate per parameter fail: apply the rate elementwise and return its "
                "gradient in the rate's shape (variants.md (V3)-(V4))",
}

PASS_HINTS = {  # what it means that only one kind of case passes
    "one_example": "only the cases with one example per set pass: look at shapes that broadcast. With n "
                   "examples, outputs (n, 1) against targets (n,) (or the reverse) broadcast to (n, n) in "
                   "mse_loss, which then compares every output with every target; with n = 1 the two "
                   "coincide. Give both the same shape (out.squeeze(-1))",
    "tasks>=2": "only cases with several tasks pass",
    "inner_steps>=1": "only cases with at least one inner step pass: the case K = 0 (the meta-loss is the query "
                      "loss at theta) fails; look at what fn does when the inner loop is empty",
}

CONVENTIONS = {  # "check the conventions first", by the kind of model checked
    "registered": "mean over examples and over tasks, l2 on the support loss only, labels 0/1 (logistic) or class "
              "indices (softmax), theta of shape (d,) or (d, C)",
    "network": "theta one flat vector in PyTorch's parameters_to_vector order (per layer the weight (out, in) "
               "row-major, then the bias, layers first to last: read it with vector_to_parameters), mse "
               "targets (T, n) for one output (squeeze an (n, 1) output) or (T, n, d_out), mse averaged over "
               "examples and outputs with no 1/2 (F.mse_loss), cross-entropy averaged over examples, the mean "
               "over tasks, l2 (all parameters) on the support loss only",
    "image": "images (T, n, C, H, W) in NCHW, convolution kernels (out, in, kh, kw), batch norm with the statistics "
             "of the set being evaluated (nn.BatchNorm2d(C, track_running_stats=False): the support set at every "
             "inner step, the query set for the query loss), max-pooling's first maximum winning a tie",
}


def kind(model):
    """``"registered"`` (the linear models), ``"network"`` or ``"image"``: which conventions a
    message about ``model`` recalls."""
    from .. import models

    if isinstance(model, str) or models.get(model).linear:
        return "registered"
    return "image" if models.get(model).input_ndim > 1 or cases.batch_norm_layers(model) else "network"


def conventions(kinds):
    """The conventions to check first, for the kinds of model checked."""
    kinds = tuple(dict.fromkeys(kinds or ("registered",)))
    parts = [CONVENTIONS[k] for k in kinds if k in ("registered", "network")]
    if "image" in kinds:
        parts += [CONVENTIONS["network"], CONVENTIONS["image"]]
    return "; ".join(dict.fromkeys(parts))


def _raised(results, limit=3):
    """The exceptions fn raised, quoted with their cases: one line per distinct message."""
    seen = {}
    for r in results:
        if r.kind == "raised":
            seen.setdefault(r.failure, []).append(r.name)
    quoted = [f"{_ids(names, 2)}: {message}" for message, names in list(seen.items())[:limit]]
    more = f" (and {len(seen) - limit} other messages)" if len(seen) > limit else ""
    return "; ".join(quoted) + more


def _unknown(results, loc, tol, kinds=()):
    failing = [r for r in results if not r.passed]
    worst = sorted(failing, key=lambda r: -max(r.grad_error, r.loss_error))[:3]
    listing = "; ".join(f"{r.name}: raised" if r.kind == "raised" else
                        f"{r.name}: loss {r.loss_error:.1e}, gradient {r.grad_error:.1e}"
                        + (f" ({r.failure})" if r.failure else "") for r in worst)
    parts = [f"they match none of the known bugs. Worst: {listing}."]
    raised = [r for r in results if r.kind == "raised"]
    if raised:
        parts.append(f"fn raised on {len(raised)} cases: {_raised(results)}.")
        if len(raised) == len(failing):
            parts.append("Every failing case raised: fix the exception first.")
        if all("inner_steps>=1" not in r.conditions for r in raised):
            parts.append("Every case that raised has K = 0 inner steps, where the meta-gradient is the query "
                         "gradient at theta and the rate takes no part: an autograd call must accept an input "
                         "the graph does not use (PyTorch: allow_unused=True, and a zero gradient for it).")
    only = [c for c in loc["failing_only_when"]
            if not (c == "inner_steps>=1" and "inner_steps>=2" in loc["failing_only_when"])]
    # the most specific first: the condition that holds for the fewest cases run
    for c in sorted(only, key=lambda c: sum(c in r.conditions for r in results)):
        parts.append(HINTS[c][0].upper() + HINTS[c][1:] + ".")
    for c in loc.get("passing_only_when", ()):
        hint = PASS_HINTS.get(c, f"only the cases with {c} pass")
        parts.append(hint[0].upper() + hint[1:] + ".")
    # what the cases that did not raise show (an exception is no evidence about the formulas)
    answered = localize([r for r in results if r.kind != "raised"], tol=tol,
                        lr_grad=loc["lr_grad_agrees"] is not None)
    where = " that did not raise" if raised else ""
    if len(raised) < len(failing):
        if answered["loss_agrees"] and not answered["grad_agrees"]:
            parts.append(f"The meta-loss agrees on every case{where}; only the meta-gradient differs: the forward "
                         "pass is right, look at the backward pass (the reverse steps g <- g - alpha H_s(theta_k) g: "
                         "their sign, the rate, the point each Hessian is taken at; maml.md (M6)).")
        elif answered["loss_agrees"] and answered["grad_agrees"] and answered["lr_grad_agrees"] is False:
            parts.append(f"The meta-loss and meta-gradient agree on every case{where}; only the rate gradient "
                         "differs: it is -g_{k+1} * grad L_s(theta_k) summed over steps (variants.md (V3)-(V4)).")
        elif not only and not loc.get("passing_only_when") and not answered["loss_agrees"]:
            parts.append(f"Check the conventions first: {conventions(kinds)}.")
    if loc.get("derivative") == "second":
        parts.append("Every case with K = 0 inner steps agrees, where the meta-gradient is the query loss's "
                     "first derivative at theta: the loss and its gradient are right, the error is in the second "
                     "derivatives (the Hessian-vector products the reverse pass takes through the inner steps; "
                     "PyTorch: create_graph=True, and every operation differentiable twice).")
    elif loc.get("derivative") == "first" and not raised:
        parts.append("A case with K = 0 inner steps fails too, where the meta-gradient is only the query loss's "
                     "gradient at theta: the loss or its first derivative is already wrong, before any inner step.")
    return " ".join(parts)


def _nondeterministic(results):
    bad = [r for r in results if r.kind == "nondeterministic"]
    return (f"fn answered {len(bad)} cases differently when called twice on the same inputs "
            f"({_ids(r.name for r in bad)}; {bad[0].failure}). Nothing can be judged from answers that change: "
            "look for dropout left on (nn.Dropout in training mode: model.eval(), or no dropout in the "
            "network), unseeded randomness (torch.randn, np.random without a fixed generator, random data "
            "augmentation) and state kept between calls (a module, optimizer or buffer that fn updates).")


COUNTS = {"T": "the number of tasks T", "1/T": "one over the number of tasks T",
          "n": "the number of support examples n", "1/n": "one over the number of support examples n",
          "m": "the number of query examples m", "1/m": "one over the number of query examples m"}


def _scaled(results, tol):
    """The constant multiples of the truth that the failing parts are (O22), in words."""
    failing = [r for r in results if not r.passed]
    words = {"loss": "meta-loss", "grad": "meta-gradient", "lr_grad": "rate gradient"}
    out = []
    for part in ("loss", "grad", "lr_grad"):
        found = [f[1:] for r in failing for f in r.factors if f[0] == part]
        if not found:
            continue
        cs = [c for c, _, _ in found]
        sizes = [size for _, size, _ in found]
        names = set(COUNTS)
        for _, _, named in found:
            names &= set(named)
        same = max(cs) - min(cs) <= 1e-9 * max(abs(c) for c in cs)
        if same and abs(cs[0] + 1) <= 1e-9:
            reason = "the opposite sign: " + ("the rate gradient is -g_{k+1} * grad L_s(theta_k) summed over steps "
                                              "(variants.md (V3)); check the sign of the inner step's alpha term"
                                              if part == "lr_grad" else "a gradient added where it is subtracted, "
                                              "or the loss negated")
            out.append(f"the {words[part]} is exactly -1 times refmaml's on every failing case ({reason})")
        elif names:
            name = sorted(names)[0]
            kind = "a sum where refmaml takes a mean" if "/" not in name else "a mean taken twice (or a sum missing)"
            out.append(f"the {words[part]} is {COUNTS[name]} times refmaml's on every failing case ({kind})")
        elif same:
            out.append(f"the {words[part]} is exactly {cs[0]:.6g} times refmaml's on every failing case (a missing "
                       "or extra constant: a 1/2 in a loss (c = 0.5), a term counted twice (c = 2), a sum where "
                       "refmaml takes a mean)")
        elif max(sizes) - min(sizes) <= 1e-6 * max(sizes) and all(abs(c) < 1 for c in cs):
            out.append(f"the {words[part]} is refmaml's scaled down to the same norm {sizes[0]:.6g} on every "
                       "failing case: it is clipped to a fixed norm (clip_grad_norm_ or a clip inside fn); "
                       "compare before clipping")
        else:
            out.append(f"the {words[part]} is a multiple of refmaml's on every failing case, by factors from "
                       f"{min(cs):.3g} to {max(cs):.3g}: a scale that depends on the case (a norm, a count)")
    return "; ".join(out)


def explain(diagnosis, results, tol, loc=None, *, kinds=(), warned=()):
    """The verdict ``diagnosis`` (:func:`refmaml.oracle.judge.diagnose`) in words: how many cases
    disagree, and what the bug is, its likely cause and its fix (``MESSAGES``), or for an unknown bug
    where the failures lie (``loc``, :func:`refmaml.oracle.judge.localize`, and ``HINTS``), with the
    conventions of the models' ``kinds`` (:func:`kind`) and the warnings fn raised (``warned``)."""
    failing = [r for r in results if not r.passed]
    if diagnosis is None:
        return f"all {len(results)} cases agree with refmaml to {tol:.0e} (relative)"
    if loc is None:
        loc = localize(results, tol=tol, lr_grad=any(r.lr_grad_error is not None for r in results))
    head = f"{len(failing)} of {len(results)} cases disagree with refmaml (tolerance {tol:.0e} relative)"
    tail = ""
    if warned:
        shown = "; ".join(w[:300] for w in warned[:2]) + (f" (and {len(warned) - 2} more)" if len(warned) > 2 else "")
        tail = f" fn warned: {shown}."
    if diagnosis == "nondeterministic":
        return f"{head}: {_nondeterministic(results)}{tail}"
    if diagnosis == "interface":
        return f"{head}: fn's answers do not have the form the check needs: {_interface(results)}{tail}"
    if diagnosis == "unstable":
        bad = [r for r in results if r.kind == "nonfinite"]
        logits = ", ".join(f"{r.name} (largest logit {r.largest_logit:.1f})" if r.largest_logit is not None
                           else r.name for r in bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        return (f"{head}: fn returned NaN or infinity on {len(bad)} cases whose right answer is finite: "
                f"{logits}. The loss is computed in a numerically unstable form: write it with softplus "
                "(log(1 + exp(z)) = logaddexp(0, z); binary_cross_entropy_with_logits) and log-sum-exp "
                f"(log_softmax, cross_entropy on logits), never log(sigmoid(z)) or log(softmax(z)).{tail}")
    if diagnosis == "unknown":
        return f"{head}, and {_unknown(results, loc, tol, kinds)}{tail}"
    if diagnosis == "scaled":
        return f"{head}: {_scaled(results, tol)}.{tail}"
    what, cause, fix = MESSAGES[diagnosis]
    variant = _variant(diagnosis, results)
    if diagnosis == "layout" and variant:
        what = f"the answers are refmaml's with theta read with {variant}"
    elif variant:
        what = f"{what} (variant: {variant})"
    if diagnosis == "broadcast_targets":
        fix = f"{fix}. {PASS_HINTS['one_example']}"
    return f"{head}: {what}. Likely cause: {cause}. Fix: {fix}.{tail}"


def _variant(diagnosis, results):
    """The variant of ``diagnosis`` that most failing diagnostic cases matched (``CaseResult.notes``)."""
    counts = {}
    pool = [r for r in results if not r.passed and r.diagnostic] or [r for r in results if not r.passed]
    for r in pool:
        for key, note in r.notes:
            if key == diagnosis:
                counts[note] = counts.get(note, 0) + 1
    return max(counts, key=counts.get) if counts else ""


def _interface(results):
    for kind_ in ("interface", "float32"):
        bad = [r for r in results if r.kind == kind_]
        if bad:
            extra = (" Compute in float64, or check a float32 implementation with dtype=\"float32\" "
                     "(tolerance 1e-4)." if kind_ == "float32" else "")
            return f"on {len(bad)} cases ({_ids(r.name for r in bad)}), {bad[0].failure}.{extra}"
    raised = [r for r in results if r.kind == "raised"]
    if raised and len(raised) == len(results):
        return f"fn raised on every case: {raised[0].failure}."
    lo, hi = FLOAT32_BAND
    return (f"every case's relative errors lie in float32's rounding band ({lo:.0e} to {hi:.0e}; float32's "
            "unit roundoff is 6e-8): the answers were computed in float32. Compute in float64, or check "
            "with dtype=\"float32\".")


def incomplete(missing, required):
    """What a results file leaves out of the ``required`` cases (``missing``: their ids): how many,
    of which network and kind, and the first few."""
    by_id = {c.id: c for c in required}
    cs = [by_id[i] for i in missing]
    kinds = {}
    for c in cs:
        name = cases.network_name(c.model)
        for key in (name, "diagnostic" if c.diagnostic else ("edge" if cases.EDGE & set(c.tags) else
                                                             f"K = {c.inner_steps}")):
            kinds[key] = kinds.get(key, 0) + 1
    listing = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return (f"{len(missing)} of the {len(required)} cases the declared options require are missing "
            f"({listing}; for example {_ids(missing, 3)})")
