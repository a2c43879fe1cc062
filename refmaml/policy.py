"""The speed policy: which form computes a meta-gradient, and how a call shares the cores.

Nothing here changes a result: both forms give the same numbers to rounding
(``derivations/dual.md``), and a call split into groups of tasks gives the same bits as one call.
A meta-gradient asks the policy twice: :func:`validating`, the context its validation runs in, and
:func:`run`, which computes it. What is decided, and how:

* the form (``form="auto"``): the cheaper of the primal and the dual form by the operation counts
  of ``derivations/dual.md`` (G8), the primal form's memory-bound matrix-vector flops weighted by
  :data:`PRIMAL_WEIGHT`; the dual form only where the network is linear and the rates allow it (G5);
* how a NumPy call shares the cores (:func:`sharing`): the dual form runs its pairs of
  independent products with the data (``G`` and ``M``, ``Z_0`` and ``U_0``, the two terms of
  (G6)) in two threads where its Gram products are many small ones (:data:`PAIR_FLOPS`, up to
  :data:`GROUP_FLOPS`); other calls run their tasks in groups, one thread per core (stacked matrix
  products run one task at a time on one core), from :data:`THREAD_FLOPS` operations where the
  BLAS library can be held to one thread for the call (:func:`refmaml._threads.one_blas_thread`),
  from :data:`UNHELD_THREAD_FLOPS` where it cannot, and not at all for a dual form whose Gram
  products OpenBLAS threads itself. It can be held where every product of the call is one that
  OpenBLAS computes with the same bits on one thread or several: matrix-vector products (OpenBLAS
  shares out their rows, each row's sum is the same) and matrix products it computes on one
  thread anyway (:func:`single_threaded`: what that bound is depends on OpenBLAS's kernel);
* how the validation of a large call reads its data (:func:`validating`): with the BLAS library
  held, the finiteness of ``Xs`` and ``Xq`` in two threads.

Measured: benchmarks/README.md, "Thread use" and "The policy on other kernels".
"""

import contextlib
import math

import array_api_compat
import numpy as np

from . import _threads, _xp, dual

FORMS = ("auto", "primal", "dual")

# The primal form's products are matrix-vector products (memory-bound); the dual form's are small
# matrix-matrix products. Measured on the benchmark machine (benchmarks/README.md, "Choosing the
# form"), a flop of the former takes about 2.5 times as long as one of the latter; "auto" weighs
# them so (G8). Where one task's Gram product X_s X_s^T is one that OpenBLAS threads (more than
# GRAM_THREADED multiply-adds, n n d, on the SkylakeX kernels; see single_threaded), the Gram flops
# (2 n^2 d + 2 m n d) count GRAM_SPEEDUP times less (measured there: 35 GFLOP/s below, 80 GFLOP/s
# above on 2 cores).
PRIMAL_WEIGHT = 2.5
GRAM_SPEEDUP = 2.3

# Matrix products that OpenBLAS computes on one thread whatever its thread count, so with the same
# bits held or not. Its gemm interface hands a product of M N K multiply-adds to int(M N K / 262144)
# threads (65536 x GEMM_MULTITHREAD_THRESHOLD, 4 in the builds NumPy ships): one thread below
# SINGLE_THREADED = 2 x 262144. Its SkylakeX kernels (also those of Cooperlake and SapphireRapids)
# first send products of at most GRAM_THREADED multiply-adds to a one-core small-matrix kernel; the
# Haswell, Zen and Sandybridge kernels have none, and thread (and round differently) from
# SINGLE_THREADED on (measured: benchmarks/README.md, "The policy on other kernels").
SINGLE_THREADED = 524287
GRAM_THREADED = 1e6
SMALL_MATRIX_KERNELS = ("skylakex", "cooperlake", "sapphirerapids")

# A NumPy call with at least this many floating-point operations (G8) runs its tasks in groups,
# one thread per core: stacked matrix products per task run on one core in OpenBLAS, and threads
# that each take a share of the tasks use the others. Measured on 2 cores (benchmarks/README.md,
# "Thread use"): 1.3 to 2x faster from about 1.5e8 flops up, no gain or a loss below.
THREAD_FLOPS = 5e7
UNHELD_THREAD_FLOPS = 1.5e8

# A dual-form NumPy call whose Gram products (2 n^2 d + 2 m n d per task) come to at least
# PAIR_FLOPS, each task's computed on one thread by OpenBLAS (single_threaded), computes its two
# products of each pair in two threads (benchmarks/README.md, "Thread use": 3.7 -> 2.9 ms at
# (32, 25, 25, 784, 5)).
PAIR_FLOPS = 2e7
# From GROUP_FLOPS operations on, task groups (BLAS held) beat the pairs: every step's work too is
# shared (measured: 86 against 101 ms at (1024, 25, 25, 784, 10)).
GROUP_FLOPS = 5e8
# The pairs' speed-up of the Gram products, for the form chooser (measured: 1.9 -> 1.1 ms for G
# and M at (32, 25, 25, 784)).
PAIR_SPEEDUP = 1.7
# A validation holds BLAS where Xs and Xq have at least HOLD_ELEMENTS elements together, and reads
# the two in two threads where each has at least PAIRED_CHECK (below, a thread costs more than
# half a pass over the array).
HOLD_ELEMENTS = 1e6
PAIRED_CHECK = 5e5


def single_threaded(mnk):
    """Whether OpenBLAS computes a matrix product of ``mnk`` multiply-adds on one thread whatever
    its thread count (:data:`SINGLE_THREADED`, :data:`GRAM_THREADED`): the same bits with the BLAS
    library held to one thread or not. The kernel is read (once) only where it decides."""
    if mnk <= SINGLE_THREADED:
        return True
    if mnk > GRAM_THREADED:
        return False
    kernels = _threads.blas_kernels()
    return bool(kernels) and all(k in SMALL_MATRIX_KERNELS for k in kernels)


def _sizes(X):
    """``(T, n, d)`` of features ``X (T, n) + example``, ``d`` the entries of one example."""
    return X.shape[0], X.shape[1], math.prod(X.shape[2:])


def costs(p, *, lr_grad=False):
    """Floating-point operations per task of the primal and the dual form, ``(primal, dual)``
    (``derivations/dual.md`` (G8)); ``None`` for the dual form where it cannot take the call."""
    T, n, d = _sizes(p.Xs)
    m = p.Xq.shape[1]
    K = p.steps
    net = p.model.network
    shape = tuple(p.theta.shape)
    size = 1
    for s in shape:
        size *= s
    primal = K * (net.gradient_flops(n, d, shape) + net.hvp_flops(n, d, shape)) \
        + net.gradient_flops(m, d, shape) + (2 * K * size if lr_grad else 0)
    kind = dual.rate_kind(p)
    if kind is None:
        return primal, None
    C = net.outputs(shape)[0] if net.outputs(shape) else 1
    cost = 2 * n * n * d + 2 * m * n * d + 4 * (n + m) * d * C + 4 * K * n * n * C + 4 * m * n * C
    if lr_grad and kind == "feature":
        cost += 2 * K * n * n * C + 2 * n * n * d + 2 * (n + m) * d * C
    return primal, cost


def weighted_costs(p, *, lr_grad=False):
    """The two forms' operation counts (:func:`costs`) as :func:`plan` compares them: the primal
    form's times :data:`PRIMAL_WEIGHT`, the dual form's with its Gram flops divided by
    :data:`GRAM_SPEEDUP` where OpenBLAS threads the Gram product (:data:`GRAM_THREADED`), or by
    :data:`PAIR_SPEEDUP` where the call computes them in pairs on two cores (:func:`sharing`)."""
    primal, cost = costs(p, lr_grad=lr_grad)
    if cost is None:
        return PRIMAL_WEIGHT * primal, None
    T, n, d = _sizes(p.Xs)
    m = p.Xq.shape[1]
    gram = 2 * n * n * d + 2 * m * n * d
    if not single_threaded(n * n * d):
        cost -= (1 - 1 / GRAM_SPEEDUP) * gram
    elif _pairs(p, T * cost):
        cost -= (1 - 1 / PAIR_SPEEDUP) * gram
    return PRIMAL_WEIGHT * primal, cost


def plan(p, form, *, lr_grad=False):
    """``(chosen, work)``: ``"primal"`` or ``"dual"`` for ``form`` in :data:`FORMS`, ``"auto"`` taking
    the cheaper by (G8) as :func:`weighted_costs` weighs them; and the operations of the whole call
    in that form, for :func:`sharing`. A form the call cannot take is a ValueError that says why."""
    if form == "dual" and not p.model.linear:
        raise ValueError(f"form='dual' needs a linear network (z = X theta); the model {p.model.name!r} "
                         "has a nonlinear one: use form='primal' or 'auto' (derivations/dual.md (G1))")
    primal, cost = costs(p, lr_grad=lr_grad)
    if form == "dual" and cost is None:
        raise ValueError(
            "form='dual' needs rates that are one number per step, or one per feature shared by "
            "all steps and classes with l2=0 (derivations/dual.md (G5)); these rates have shape "
            f"{tuple(p.rate.shape)} with l2={p.l2}: use form='primal' or 'auto'")
    if form == "auto":
        weighted_primal, weighted_dual = weighted_costs(p, lr_grad=lr_grad)
        form = "dual" if weighted_dual is not None and weighted_dual < weighted_primal else "primal"
    return form, p.tasks * (cost if form == "dual" else primal)


def choose(p, form, *, lr_grad=False):
    """The form :func:`plan` chooses."""
    return plan(p, form, lr_grad=lr_grad)[0]


def sharing(p, form, work):
    """``(mode, hold)``: how :func:`run` shares the cores for the call ``p`` in ``form`` of ``work``
    operations (:func:`plan`), ``"pairs"``, ``"groups"`` or None (one thread), and whether it holds
    the BLAS library to one thread; from the problem's shapes, the form and the BLAS kernel
    (:func:`single_threaded`), never from the number of cores. NumPy calls of two tasks or more."""
    if p.tasks < 2 or not array_api_compat.is_numpy_namespace(p.xp):
        return None, False
    T, n, d = _sizes(p.Xs)
    m = p.Xq.shape[1]
    net = p.model.network
    outputs = net.outputs(tuple(p.theta.shape)) if p.model.linear else None
    C = (outputs[0] if outputs else 1) if p.model.linear else None
    if form == "dual":
        if _pairs(p, work):
            return "pairs", True
        small = single_threaded(max(n, m) * n * d)
    else:
        small = p.model.linear and (C == 1 or single_threaded(max(n, m) * d * C))
    if small and work >= THREAD_FLOPS:
        return "groups", True
    if form == "dual":  # large Gram products: OpenBLAS threads them better than task groups do
        return None, False
    return ("groups" if work >= UNHELD_THREAD_FLOPS else None), False


def _pairs(p, work):
    """Whether a dual-form call of ``work`` operations computes its products in pairs: NumPy, two
    tasks or more, Gram products that OpenBLAS computes on one thread (:func:`single_threaded`)
    and that come to at least :data:`PAIR_FLOPS`, and less than :data:`GROUP_FLOPS` in all."""
    if p.tasks < 2 or not array_api_compat.is_numpy_namespace(p.xp):
        return False
    T, n, d = _sizes(p.Xs)
    m = p.Xq.shape[1]
    return T * (2 * n * n * d + 2 * m * n * d) >= PAIR_FLOPS and work < GROUP_FLOPS \
        and single_threaded(max(n, m) * n * d)


def validating(Xs, Xq):
    """The context a call's validation runs in; entered, it gives the finiteness check for the
    validation to use on the NumPy float64 arrays it reads (``problem.meta(..., finite=...)``).

    Where ``Xs`` and ``Xq`` are NumPy arrays of at least :data:`HOLD_ELEMENTS` elements together,
    the BLAS library is held to one thread and the check reads the two largest arrays in two
    threads (:data:`PAIRED_CHECK`). Validation only reads flags from BLAS (finiteness), so no
    result depends on it; holding it keeps OpenBLAS's threads from waking and then spinning through
    the call that follows (:mod:`refmaml._threads`). Not where the Gram products are large enough
    for OpenBLAS to thread them (:func:`single_threaded`): those calls do not hold BLAS
    (:func:`sharing`), and a held validation would only be slower. Elsewhere the check reads the
    arrays one after the other (:func:`refmaml._xp.numpy_finite`)."""
    if type(Xs) is np.ndarray and type(Xq) is np.ndarray and Xs.size + Xq.size >= HOLD_ELEMENTS \
            and Xs.ndim in (2, 3) and Xq.ndim in (2, 3) and Xs.shape[-1] == Xq.shape[-1] \
            and single_threaded(max(Xs.shape[-2], Xq.shape[-2]) * Xs.shape[-2] * Xs.shape[-1]):
        return _held_validation()
    return _ONE_THREAD_VALIDATION


_ONE_THREAD_VALIDATION = contextlib.nullcontext(_xp.numpy_finite)
_NOT_HELD = contextlib.nullcontext()


@contextlib.contextmanager
def _held_validation():
    with _threads.one_blas_thread():
        yield finite_in_two_threads


def finite_in_two_threads(*arrays):
    """:func:`refmaml._xp.numpy_finite` with the two largest arrays, where both have at least
    :data:`PAIRED_CHECK` elements and there are two cores, read in two threads
    (:func:`refmaml._threads.both`); the same answer."""
    large = sorted((a for a in arrays if a.size >= PAIRED_CHECK), key=lambda a: a.size)
    if len(large) < 2 or _threads.CORES < 2:
        return _xp.numpy_finite(*arrays)
    first, second = large[-1], large[-2]
    rest = [a for a in arrays if a is not first and a is not second]
    one, other = _threads.both(lambda: _xp.numpy_finite(first), lambda: _xp.numpy_finite(second))
    return one and other and _xp.numpy_finite(*rest)


def run(p, form, *, lr_grad, compute):
    """The policy's one entry for computing a validated call ``p``: ``compute(part, chosen,
    pairs)`` for the form :func:`plan` chooses from ``form`` (in :data:`FORMS`), shared among the
    cores as :func:`sharing` decides (the BLAS library held to one thread where it says so; in
    task groups, ``compute`` for each group, the per-task results joined in task order; with the
    dual form's pairs, ``pairs=True``). ``compute`` returns per-task results ``(T, ...)`` (None
    for one it does not compute); so does this. Every product is computed as in one thread, so
    the result is the same to the bit however the call is shared. A ``form`` the call cannot take
    is a ValueError, before anything is computed."""
    chosen, work = plan(p, form, lr_grad=lr_grad)
    mode, hold = sharing(p, chosen, work)
    with _threads.one_blas_thread() if hold else _NOT_HELD:
        if mode == "groups":
            return by_task_groups(p, lambda part: compute(part, chosen, False))
        return compute(p, chosen, mode == "pairs")


def by_task_groups(p, compute):
    """``compute(part)`` on groups of tasks in threads, one per core, the per-task results joined in
    task order. Every task is computed exactly as in one call, so the result is bit for bit the
    same."""
    xp = p.xp
    T = p.tasks
    workers = min(_threads.CORES, T)
    if workers < 2:
        return compute(p)
    edges = [T * k // workers for k in range(workers + 1)]
    parts = [p.task_slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    others = [_threads.pool().submit(compute, part) for part in parts[1:]]
    results = [compute(parts[0])] + [f.result() for f in others]
    return tuple(None if r[0] is None else xp.concat(r, axis=0) for r in zip(*results, strict=True))
