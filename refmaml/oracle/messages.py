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


def _unknown(results, loc, tol):
    failing = [r for r in results if not r.passed]
    worst = sorted(failing, key=lambda r: -max(r.grad_error, r.loss_error))[:3]
    listing = "; ".join(f"{r.name}: loss {r.loss_error:.1e}, gradient {r.grad_error:.1e}"
                        + (f" ({r.failure})" if r.failure else "") for r in worst)
    parts = [f"they match none of the known bugs. Worst: {listing}."]
    raised = [r for r in results if r.kind == "raised"]
    if raised:
        parts.append(f"fn raised on {len(raised)} cases ({_ids(loc['raised'])}).")
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
        elif not only and not answered["loss_agrees"]:
            parts.append("Check the conventions first: mean over examples and over tasks, l2 on the support "
                         "loss only, labels 0/1 (logistic) or class indices (softmax), theta of shape (d,) or (d, C).")
    return " ".join(parts)


def explain(diagnosis, results, tol, loc=None):
    """The verdict ``diagnosis`` (:func:`refmaml.oracle.judge.diagnose`) in words: how many cases
    disagree, and what the bug is, its likely cause and its fix (``MESSAGES``), or for an unknown bug
    where the failures lie (``loc``, :func:`refmaml.oracle.judge.localize`, and ``HINTS``)."""
    failing = [r for r in results if not r.passed]
    if diagnosis is None:
        return f"all {len(results)} cases agree with refmaml to {tol:.0e} (relative)"
    if loc is None:
        loc = localize(results, tol=tol, lr_grad=any(r.lr_grad_error is not None for r in results))
    head = f"{len(failing)} of {len(results)} cases disagree with refmaml (tolerance {tol:.0e} relative)"
    if diagnosis == "interface":
        return f"{head}: fn's answers do not have the form the check needs: {_interface(results)}"
    if diagnosis == "unstable":
        bad = [r for r in results if r.kind == "nonfinite"]
        logits = ", ".join(f"{r.name} (largest logit {r.largest_logit:.1f})" if r.largest_logit is not None
                           else r.name for r in bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        return (f"{head}: fn returned NaN or infinity on {len(bad)} cases whose right answer is finite: "
                f"{logits}. The loss is computed in a numerically unstable form: write it with softplus "
                "(log(1 + exp(z)) = logaddexp(0, z); binary_cross_entropy_with_logits) and log-sum-exp "
                "(log_softmax, cross_entropy on logits), never log(sigmoid(z)) or log(softmax(z)).")
    if diagnosis == "unknown":
        return f"{head}, and {_unknown(results, loc, tol)}"
    what, cause, fix = MESSAGES[diagnosis]
    return f"{head}: {what}. Likely cause: {cause}. Fix: {fix}."


def _interface(results):
    for kind in ("interface", "float32"):
        bad = [r for r in results if r.kind == kind]
        if bad:
            extra = (" Compute in float64, or check a float32 implementation with dtype=\"float32\" "
                     "(tolerance 1e-4)." if kind == "float32" else "")
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
