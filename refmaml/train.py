"""Meta-training: ``derivations/training.md`` (T5)-(T9).

One loop serves every method. Each iteration draws a meta-batch of training
tasks (:mod:`refmaml.tasks`), computes the method's meta-gradient, and takes one
Adam step (:mod:`refmaml.adam`):

* ``maml``: the exact meta-gradient through ``inner_steps`` steps (M6);
* ``fomaml``: first-order MAML, the Hessian terms dropped (M8);
* ``anil``: exact MAML whose inner loop adapts the network's last layer only (Raghu et al. 2020,
  "almost no inner loop"): ``inner_mask = model.mask(-1)``, in training and in evaluation (T15);
  network families only;
* ``metasgd``: MAML with one learned rate per parameter, initialised at
  ``inner_lr``; the rates get their gradient from the same reverse pass (V2)-(V4);
* ``reptile``: the Reptile direction (V6) on each task's support and query
  examples together, used in place of a gradient (T8);
* ``imaml``: the implicit meta-gradient of the proximal inner problem (V11);
* ``pretrain``: the baseline of multi-task pre-training, the gradient of the
  loss pooled over every task's support and query examples (T9);
* ``zero``: the baseline of no training, ``theta = 0`` (``iterations`` is ignored);
* ``random``: the baseline of no training from the family's initial parameters: zeros for
  the linear models (the same as ``zero``), a fresh random initialisation for networks.

Every other method starts from the family's initial parameters too (``Family.initial``).

The random generator, the parameters and Adam's state are the whole state; a
checkpoint holds all three, so a resumed run repeats the uninterrupted run to
the bit.
"""

import dataclasses
import json
import os

import numpy as np

from . import _validate, _xp, adam, checkpoint, models, problem, tasks
from .evaluate import adaptation_curve, summarize
from .maml import meta_value_and_grad
from .variants import imaml_value_and_grad, reptile_direction

METHODS = ("maml", "fomaml", "anil", "metasgd", "reptile", "imaml", "pretrain", "zero", "random")
UNTRAINED = ("zero", "random")
LEARNS_RATES = ("metasgd",)
HEAD_ONLY = ("anil",)  # methods whose inner loop adapts the last layer only (T15)
FORMAT, VERSION = "refmaml-checkpoint", 2
READABLE = (1, 2)  # version 1 kept no interval with its curve (read as NaN half-widths)
Invalid = checkpoint.InvalidCheckpoint
# Bounds of a configuration (RELIABILITY.md, "Bounds"): beyond them a run would exhaust memory or never end.
MAX_ITERATIONS = 10**9  # iterations and eval_every
MAX_TASKS = 100_000  # meta_batch, curve_tasks (and the command line's --eval-tasks)
MAX_EXAMPLES = 10**6  # support and query each, and the examples of one batch of tasks: tasks x (support + query)
MAX_SEED = 2**63 - 1


def require_backend(name):
    """Raise the ImportError of a missing array library now, before any work or folder: ``name`` is
    a backend of :func:`refmaml._xp.backend` (``None`` or ``"numpy"`` always present)."""
    if name is not None and name != "numpy":
        _xp.backend(name)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that determines a training run (and nothing that does not)."""

    family: str = "synthetic-binary"
    method: str = "maml"
    inner_lr: float = 0.5
    inner_steps: int = 5
    meta_batch: int = 16
    iterations: int = 1000
    outer_lr: float = 0.01
    support: int = 10
    query: int = 15
    l2: float = 0.0
    lam: float = 1.0
    seed: int = 0
    backend: str = "numpy"
    eval_every: int = 100
    curve_tasks: int = 100

    def validated(self):
        """This configuration after checking every field; raises ``TypeError``/``ValueError``."""
        for name in ("family", "method", "backend"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string; got {getattr(self, name)!r}")
        if self.family not in tasks.FAMILIES:
            raise ValueError(f"family must be one of {', '.join(tasks.FAMILIES)}; got {self.family!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.method in HEAD_ONLY and self.family not in tasks.NETWORK_FAMILIES:
            raise ValueError(f"method {self.method!r} adapts a network's last layer only; the family "
                             f"{self.family!r} has a linear model (network families: "
                             f"{', '.join(tasks.NETWORK_FAMILIES)})")
        if self.backend not in _xp.BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(_xp.BACKENDS)}; got {self.backend!r}")
        for name, minimum, maximum in (("inner_steps", 0, _validate.MAX_STEPS), ("meta_batch", 1, MAX_TASKS),
                                       ("iterations", 0, MAX_ITERATIONS), ("support", 1, MAX_EXAMPLES),
                                       ("query", 1, MAX_EXAMPLES), ("seed", 0, MAX_SEED),
                                       ("eval_every", 0, MAX_ITERATIONS), ("curve_tasks", 2, MAX_TASKS)):
            _validate.integer(getattr(self, name), name, minimum, maximum)
        for name in ("meta_batch", "curve_tasks"):
            examples = getattr(self, name) * (self.support + self.query)
            if examples > MAX_EXAMPLES:
                raise ValueError(f"{name} x (support + query) = {getattr(self, name)} x {self.support + self.query} "
                                 f"= {examples} examples; a batch of tasks holds at most {MAX_EXAMPLES}")
        if _validate.real_number(self.inner_lr, "inner_lr") < 0:  # the library takes it; training on it ascends
            raise ValueError(f"inner_lr must be >= 0 for training (a negative rate climbs the support loss); "
                             f"got {self.inner_lr}")
        _validate.l2(self.l2)
        _validate.positive(self.outer_lr, "outer_lr")
        _validate.positive(self.lam, "lam")
        return self

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields):
        """A validated configuration from a dict (unknown or missing fields are errors)."""
        if not isinstance(fields, dict):
            raise TypeError(f"a configuration must be a dict; got {type(fields).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(fields) != names:
            missing, extra = sorted(names - set(fields)), sorted(set(fields) - names)
            raise ValueError("configuration fields do not match"
                             + (f"; missing: {_validate.listing(missing)}" if missing else "")
                             + (f"; unexpected: {_validate.listing(extra)}" if extra else ""))
        return cls(**fields).validated()


@dataclasses.dataclass
class State:
    """A run in progress: parameters (``theta`` and, for Meta-SGD, ``rates``), Adam's state,
    the iterations done, the random generator, and the records so far."""

    config: Config
    params: dict
    optimizer: adam.State
    iteration: int
    rng: np.random.Generator
    losses: list  # the method's objective on each iteration's meta-batch (T8), (T9)
    curve: list  # (iteration, mean, 95% half-width) of the held-out query accuracy (MSE for regression)


def _family(config):
    return tasks.family(config.family)


def start(config):
    """A fresh run: the family's initial ``theta`` (zeros for the linear models, ``MLP.init(seed)``
    for networks; zeros for ``zero``), Meta-SGD's rates at ``inner_lr``, Adam at rest."""
    config = config.validated()
    family = _family(config)
    put, _ = _xp.backend(config.backend)
    initial = np.zeros(family.parameter_shape) if config.method == "zero" else family.initial(config.seed)
    params = {"theta": put(initial)}
    if config.method in LEARNS_RATES:
        params["rates"] = put(np.full(family.parameter_shape, float(config.inner_lr)))
    return State(config, params, adam.init(params), 0, np.random.default_rng(config.seed), [], [])


def inner_rate(state):
    """The rate(s) the run adapts with: learned rates for Meta-SGD, else ``inner_lr``."""
    return state.params.get("rates", state.config.inner_lr)


def inner_mask(method, model, put=None):
    """Which parameters the inner loop of ``method`` adapts: ``model.mask(-1)``, the last layer's,
    for ANIL (T15), on the device of ``put``; ``None`` (all of them) for every other method."""
    if method not in HEAD_ONLY:
        return None
    mask = models.get(model).mask(-1)
    return mask if put is None else put(mask)


def meta_gradient(config, model, params, batch):
    """The method's objective on ``batch`` and its gradients, one per entry of ``params``:
    (M6), (M8), (V2)-(V4), (V11), Reptile's direction (T8), the pooled gradient (T9).

    ``batch`` is ``(Xs, ys, Xq, yq)`` in the parameters' namespace and device.
    """
    c, theta = config, params["theta"]
    xp = _xp.array_namespace(theta)
    Xs, ys, Xq, yq = batch
    common = dict(model=model, l2=c.l2)
    if c.method in ("maml", "fomaml"):
        loss, g = meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=c.inner_lr, inner_steps=c.inner_steps,
                                      first_order=c.method == "fomaml", **common)
        return loss, {"theta": g}
    if c.method in HEAD_ONLY:
        mask = inner_mask(c.method, model, _xp.backend(c.backend)[0])
        loss, g = meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=c.inner_lr, inner_steps=c.inner_steps,
                                      inner_mask=mask, **common)
        return loss, {"theta": g}
    if c.method == "metasgd":
        loss, g, g_rates = meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=params["rates"],
                                               inner_steps=c.inner_steps, lr_grad=True, **common)
        return loss, {"theta": g, "rates": g_rates}
    if c.method == "imaml":
        loss, g, _ = imaml_value_and_grad(theta, Xs, ys, Xq, yq, lam=c.lam, tol=1e-10, **common)
        return loss, {"theta": g}
    X, y = xp.concat([Xs, Xq], axis=1), xp.concat([ys, yq], axis=1)
    m = models.get(model)
    if c.method == "reptile":
        direction = reptile_direction(theta, X, y, inner_lr=c.inner_lr, inner_steps=c.inner_steps, **common)
        return xp.mean(m.loss(theta, X, y, l2=c.l2)), {"theta": direction}
    call = problem.model_call(m, theta, X, y, l2=c.l2)  # one forward pass for the loss and its gradient
    with _xp.quiet_overflow():
        losses, grads = m.value_grad(call.theta, call.X, call.y, call.l2)
    return xp.mean(losses), {"theta": xp.mean(grads, axis=0)}


def _device_batch(put, batch):
    return tuple(put(a) for a in (batch.Xs, batch.ys, batch.Xq, batch.yq))


def held_out_score(state, model, held):
    """``(mean, half-width of the 95% interval)`` over the device batch ``held`` of the query accuracy
    after ``inner_steps`` steps; of the query loss (MSE) for a regression family (T12)."""
    c = state.config
    accuracy, loss = adaptation_curve(model, state.params["theta"], *held, inner_lr=inner_rate(state),
                                      steps=c.inner_steps, l2=c.l2,
                                      inner_mask=inner_mask(c.method, model, _xp.backend(c.backend)[0]))
    s = summarize((loss if accuracy is None else accuracy)[-1])
    return s.mean, s.half_width


def _require_finite(iteration, params, optimizer):
    """Adam's new state must be finite; a meta-gradient too large to square is divergence (a check of
    device values: inside the iteration's deferred scope, read with the meta-gradient's checks)."""
    arrays = [*params.values(), *optimizer.m.values(), *optimizer.v.values()]
    _validate.require(_xp.finite_flag(_xp.array_namespace(arrays[0]), *arrays), lambda: ValueError(
        f"meta-training diverged at iteration {iteration}: the meta-gradient or Adam's "
        "moments overflow; use a smaller inner_lr, outer_lr or inner_steps"))


def run(state, *, checkpoint_path=None, checkpoint_every=0, progress=False):
    """Continue ``state`` to ``config.iterations``; returns the final state.

    Every ``eval_every`` iterations, the mean query accuracy (MSE for regression) after
    ``inner_steps`` steps on the first ``curve_tasks`` held-out tasks joins ``state.curve`` (a
    record of training only: nothing is selected with it). With ``checkpoint_path``,
    the state is saved atomically every ``checkpoint_every`` iterations (if > 0) and
    at the end. ``progress`` shows a progress bar (tqdm) on standard error.
    """
    c = state.config
    family = _family(c)
    put, _ = _xp.backend(c.backend)
    todo = 0 if c.method in UNTRAINED else c.iterations
    held = None
    if c.eval_every and todo:
        held = _device_batch(put, family.held_out(c.curve_tasks, c.support, c.query))
    if held is not None and state.iteration == 0:
        state.curve.append((0, *held_out_score(state, family.model, held)))
    bar = None
    if progress and state.iteration < todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=todo, initial=min(state.iteration, todo), desc=c.method, leave=False,
                   unit="it", dynamic_ncols=True)
    try:
        while state.iteration < todo:
            batch = _device_batch(put, family.sample(state.rng, c.meta_batch, c.support, c.query))
            with _validate.deferred():  # on a device: one host read per iteration, when this block ends
                loss, grads = meta_gradient(c, family.model, state.params, batch)
                with _xp.quiet_overflow():
                    params, optimizer = adam.step(state.params, grads, state.optimizer, c.outer_lr)
                _require_finite(state.iteration + 1, params, optimizer)
            state.params, state.optimizer = params, optimizer
            state.iteration += 1
            state.losses.append(float(loss))
            if held is not None and state.iteration % c.eval_every == 0:
                state.curve.append((state.iteration, *held_out_score(state, family.model, held)))
            if checkpoint_path and checkpoint_every and state.iteration % checkpoint_every == 0:
                save(checkpoint_path, state)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if checkpoint_path:
        save(checkpoint_path, state)
    return state


def train(config, *, checkpoint_path=None, checkpoint_every=0, resume=None, progress=False):
    """Train from scratch, or from the checkpoint ``resume``; see :func:`run`.

    A resumed run continues to ``config.iterations``, which must be at least the iterations the
    checkpoint holds (a ValueError that says how many it holds; equal: the run is already complete
    and is returned as saved).
    """
    state = load(resume, config) if resume is not None else start(config)
    if state.iteration > state.config.iterations and state.config.method not in UNTRAINED:
        raise ValueError(f"the checkpoint {os.fspath(resume)!r} holds {state.iteration} iterations, more than "
                         f"iterations={state.config.iterations}: resume to {state.iteration} or more")
    return run(state, checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every, progress=progress)


# --- checkpoints ---------------------------------------------------------------------------------

def _fields(state):
    out = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION, dtype=np.int64),
        "config": np.array(json.dumps(state.config.as_dict(), sort_keys=True)),
        "iteration": np.array(state.iteration, dtype=np.int64),
        "rng": np.array(json.dumps(state.rng.bit_generator.state)),
        "losses": np.array(state.losses, dtype=np.float64),
        "curve": np.array(state.curve, dtype=np.float64).reshape(-1, 3),
    }
    for k, p in state.params.items():
        out[f"param_{k}"] = _xp.to_numpy(p)
        out[f"adam_m_{k}"] = _xp.to_numpy(state.optimizer.m[k])
        out[f"adam_v_{k}"] = _xp.to_numpy(state.optimizer.v[k])
    return out


def save(path, state):
    """Write ``state`` to ``path`` atomically (``refmaml.checkpoint.write``)."""
    checkpoint.write(path, _fields(state))


def _scalar(fields, name, kind):
    a = fields[name]
    if a.shape != () or a.dtype.kind not in kind:
        what = "string" if kind == "U" else "integer"
        raise Invalid(f"checkpoint field {name!r} must be a single {what}; got {a.dtype} {a.shape}")
    return a.item()


def _rng(text):
    try:
        state = json.loads(text)
        bit_generator = np.random.PCG64()
        if not (isinstance(state, dict) and state.get("bit_generator") == "PCG64"):
            raise ValueError("not a PCG64 state")
        bit_generator.state = state
    except RecursionError:
        raise Invalid("checkpoint field 'rng' is not a PCG64 generator state (JSON nested too deep)") from None
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise Invalid(f"checkpoint field 'rng' is not a PCG64 generator state ({exc})") \
            from None
    return np.random.Generator(bit_generator)


def load(path, config=None):
    """The state saved at ``path``, checked field by field.

    With ``config``, the saved configuration must equal it in every field except
    ``iterations`` (a run may be continued further than first planned); a mismatch
    is an :class:`refmaml.checkpoint.InvalidCheckpoint` naming the fields.
    """
    per_param = [f"{p}{k}" for k in ("theta", "rates") for p in ("param_", "adam_m_", "adam_v_")]
    head = checkpoint.read(path, ["format", "version", "config", "iteration", "rng", "losses", "curve"]
                           + per_param[:3], per_param[3:])
    present = [name for name in per_param[3:] if name in head]
    if present and len(present) != 3:
        raise Invalid(f"{path!r}: learned rates need the fields {', '.join(per_param[3:])} together; it holds "
                      f"{', '.join(present)} only")
    if _scalar(head, "format", "U") != FORMAT:
        raise Invalid(f"{path!r} is not a refmaml checkpoint")
    version = _scalar(head, "version", "i")
    if version not in READABLE:
        raise Invalid(f"{path!r} has checkpoint version {version}; this refmaml reads versions "
                      f"{', '.join(map(str, READABLE))}")
    try:
        saved = Config.from_dict(json.loads(_scalar(head, "config", "U")))
    except RecursionError:
        raise Invalid(f"{path!r} holds an invalid configuration: its JSON is nested too deep") from None
    except (ValueError, TypeError) as exc:
        raise Invalid(f"{path!r} holds an invalid configuration: {exc}") from None
    if version == 1 and saved.family in tasks.NETWORK_FAMILIES:
        raise Invalid(f"{path!r} has checkpoint version 1 and the family {saved.family!r}: version 1 predates "
                      "the network families, so it was not written by refmaml")
    if config is not None:
        config = config.validated()
        differ = [k for k, v in config.as_dict().items() if k != "iterations" and saved.as_dict()[k] != v]
        if differ:
            pairs = (f"{k} = {getattr(saved, k)!r} there, {getattr(config, k)!r} here" for k in differ)
            raise Invalid(f"{path!r} was saved by a run with another configuration: " + "; ".join(pairs))
        saved = dataclasses.replace(saved, iterations=config.iterations)
    iteration = _scalar(head, "iteration", "i")
    if iteration < 0:
        raise Invalid(f"checkpoint field 'iteration' must be >= 0; got {iteration}")
    names = ("theta", "rates") if saved.method in LEARNS_RATES else ("theta",)
    if ("param_rates" in head) != ("rates" in names):
        raise Invalid(f"{path!r}: learned rates are present exactly when the method learns them "
                      f"({', '.join(LEARNS_RATES)})")
    shape = _family(saved).parameter_shape
    put, _ = _xp.backend(saved.backend)
    params, m, v = {}, {}, {}
    for k in names:
        for prefix, into in (("param_", params), ("adam_m_", m), ("adam_v_", v)):
            a = head[prefix + k]
            if a.shape != shape or a.dtype != np.float64 or not np.all(np.isfinite(a)):
                raise Invalid(f"checkpoint field {prefix + k!r} must be a finite float64 array "
                              f"of shape {shape}")
            if prefix == "adam_v_" and np.any(a < 0):
                raise Invalid(f"checkpoint field {prefix + k!r} holds negative second moments")
            into[k] = put(a)
    losses, curve = head["losses"], head["curve"]
    if losses.dtype != np.float64 or losses.shape != (iteration,) or not np.all(np.isfinite(losses)):
        raise Invalid(f"checkpoint field 'losses' must be finite float64 of shape ({iteration},)")
    columns = 2 if version == 1 else 3
    if curve.dtype != np.float64 or curve.ndim != 2 or curve.shape[1] != columns \
            or not np.all(np.isfinite(curve[:, :2])):
        raise Invalid(f"checkpoint field 'curve' must be a finite float64 array of shape (k, {columns})")
    if version > 1 and not np.all(np.isnan(curve[:, 2]) | (curve[:, 2] >= 0)):  # NaN: from a version 1 run
        raise Invalid("checkpoint field 'curve' holds a negative or infinite half-width")
    if version == 1:
        curve = np.concatenate([curve, np.full((curve.shape[0], 1), np.nan)], axis=1)
    rng = _rng(_scalar(head, "rng", "U"))
    return State(saved, params, adam.State(m, v, iteration), iteration, rng,
                 [float(x) for x in losses], [(int(i), float(a), float(h)) for i, a, h in curve])
