"""The oracle's cases: seeded, versioned MAML problems in float64.

Every case is a stack of tasks (``T >= 1`` on the leading axis, as in
:func:`refmaml.meta_value_and_grad`), with NumPy arrays: ``theta`` float64,
features float64, logistic labels float64 0/1, softmax labels int64. The
list is fixed by ``VERSION``: a case's id, its data and its answers never
change within a version.

The *diagnostic* cases (``T >= 2``, ``K >= 2``, several examples, support and
query of different sizes) are where every diagnosed bug gives an answer far
from the truth and from every other bug's (``derivations/oracle.md`` (O7)).
Version 3 adds, to version 2's cases unchanged, cases that vary one condition
alone (``l2 > 0``, learned rates, one example per set, saturation, each with
one task and one inner step: tag ``alone``, (O12)) and the cases of two image
networks (``CONV_NETWORKS``: the ConvNet preset with batch norm, and the same
network without it), then the ConvNet preset's cases again with ANIL's
``inner_mask`` (``MASKED_NETWORKS``, :func:`anil_mask`; ids ending in the
mask's tag). Every array of a case is read-only.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from .. import instances, models
from ..maml import adapt

VERSION = "3"          # the version ``refmaml vectors`` writes; versions 1 and 2 stay readable, frozen
VERSIONS = ("1", "2", "3")
MODELS = ("logistic", "softmax", "linear")  # version 1 has the first two
LINEAR_RATE = 0.1  # linear regression's support Hessian (2/n) Xs^T Xs reaches about 7 here: rates stay below 2/7
STEPS = (0, 1, 2, 5)
CLASSES = 3  # of the softmax cases
EDGE = {"onefeature", "oneexample", "saturated", "alone"}  # edge cases, run by every check


@dataclass(frozen=True)
class Case:
    """One MAML problem. ``inner_lr`` is a float or, for learned-rate cases, an array of
    ``theta``'s shape (one rate per parameter, every step). ``mask``: None, or the boolean
    ``inner_mask`` of a check of meta-only parameters (maml.md (M10))."""

    id: str
    model: str
    theta: np.ndarray
    Xs: np.ndarray
    ys: np.ndarray
    Xq: np.ndarray
    yq: np.ndarray
    inner_lr: object
    inner_steps: int
    l2: float = 0.0
    diagnostic: bool = False
    note: str = ""
    tags: tuple = field(default=())
    mask: object = None

    def __post_init__(self):
        for name in ("theta", "Xs", "ys", "Xq", "yq", "inner_lr", "mask"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)   # nobody, fn included, writes into a case

    @property
    def rates(self):
        """Whether the case has learned (array) rates."""
        return isinstance(self.inner_lr, np.ndarray)

    @property
    def T(self):
        return self.Xs.shape[0]

    def rate(self, lr_grad):
        """``inner_lr`` as the check passes it: with ``lr_grad`` always an array of ``theta``'s
        shape (a scalar rate repeated), otherwise the case's own."""
        if lr_grad and not self.rates:
            return np.full(self.theta.shape, self.inner_lr)
        return self.inner_lr

    def rounded(self, dtype):
        """The case with its real inputs rounded to ``dtype`` (and held in float64 again), so that
        the right answer for a float32 implementation is computed from the numbers it received."""
        if np.dtype(dtype) == np.float64:
            return self

        def r(a):
            return np.asarray(a, dtype=dtype).astype(np.float64)

        rate = r(self.inner_lr) if self.rates else float(r(self.inner_lr))
        return replace(self, theta=r(self.theta), Xs=r(self.Xs), Xq=r(self.Xq), inner_lr=rate)


def _make(seed, model, *, T, n, m, d, K, l2=0.0, alpha=0.4, rates=False, scale=0.5, diagnostic=False,
          note="", tag=""):
    rng = np.random.default_rng(seed)
    p = instances.draw(rng, model, T=T, n=n, m=m, features=d, classes=CLASSES, scale=scale)
    inner_lr = alpha * rng.uniform(0.5, 1.5, p.theta.shape) if rates else float(alpha)
    parts = [model, f"K{K}", f"T{T}", f"n{n}", f"m{m}", f"d{d}"]
    parts += (["l2"] if l2 else []) + (["rates"] if rates else []) + ([tag] if tag else [])
    tags = tuple(t for t, on in (("l2", bool(l2)), ("rates", rates), (tag, bool(tag))) if on)
    return Case("-".join(parts), model, p.theta, p.Xs, p.ys, p.Xq, p.yq, inner_lr, K, float(l2), diagnostic, note,
                tags)


def _saturated(seed, model, K, T=2, tags=()):
    """Logits of about +-20: probabilities within 1e-9 of 0 and 1."""
    case = _make(seed, model, T=T, n=4, m=5, d=2, K=K, alpha=0.2, tag="saturated",
                 note="logits of size about 20: saturated probabilities")
    grow = 20.0 / np.max(np.abs(case.Xs @ case.theta))
    return Case(case.id + "".join(f"-{t}" for t in tags), model, case.theta * grow, case.Xs, case.ys, case.Xq,
                case.yq, case.inner_lr, K, note=case.note, tags=case.tags + tuple(tags))


ALONE_NOTE = "one condition alone: one task, one inner step"


def _alone(seed, model, alpha):
    """Version 3's cases of one condition each, with one task and one inner step (O12): ``l2 > 0``,
    learned rates, one example per set, and (classifiers) saturated probabilities; a failure
    confined to one of them is not also read as "tasks >= 2" or "K >= 2"."""
    out = []
    for l2, rates in ((0.1, False), (0.0, True)):
        seed += 1
        c = _make(seed, model, T=1, n=5, m=7, d=4, K=1, l2=l2, rates=rates, alpha=alpha, tag="alone",
                  note=ALONE_NOTE)
        out.append(c)
    seed += 1
    c = _make(seed, model, T=1, n=1, m=1, d=4, K=1, alpha=alpha, tag="oneexample", note=ALONE_NOTE)
    out.append(replace(c, id=c.id + "-alone", tags=c.tags + ("alone",)))
    seed += 1
    if models.get(model).targets != "real":
        out.append(_saturated(seed, model, K=1, T=1, tags=("alone",)))
    return out


_ALL = {}


def all_cases(version=VERSION, *, networks=True):
    """Every case of ``version``, built once per process (the cases are read-only):
    :func:`build`."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}; got {version!r}")
    if (version, networks) not in _ALL:
        _ALL[version, networks] = build(version, networks=networks)
    return list(_ALL[version, networks])


def build(version=VERSION, *, networks=True):
    """Every case of ``version`` (``"1"``, ``"2"`` or ``"3"``), in a fixed order; version 2 is
    version 1's cases, unchanged, followed by the linear-regression cases and the cases of the two
    networks of ``NETWORKS()`` (:func:`network_cases`); version 3 is version 2's, unchanged,
    followed by the cases of one condition alone of the three registered models and of those
    networks, the cases of the image networks of ``CONV_NETWORKS()`` and those of
    ``MASKED_NETWORKS()`` with ANIL's mask (:func:`anil_mask`)."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}; got {version!r}")
    out = []
    seed = 1000
    for model in MODELS[:2] + (MODELS[2:] if version != "1" else ()):
        regression = models.get(model).targets == "real"
        alpha = LINEAR_RATE if regression else 0.4
        for K in STEPS:
            for T in (1, 3):
                for l2 in (0.0, 0.1):
                    for rates in (False, True):
                        seed += 1
                        out.append(_make(seed, model, T=T, n=5, m=7, d=4, K=K, l2=l2, rates=rates,
                                         alpha=alpha))
        for l2 in (0.0, 0.1):  # the diagnostic cases
            for rates in (False, True):
                for K in (2, 3):
                    seed += 1
                    out.append(_make(seed, model, T=4, n=6, m=9, d=5, K=K, l2=l2, rates=rates,
                                     alpha=LINEAR_RATE if regression else 0.5,
                                     diagnostic=True, tag="diagnostic",
                                     note="every diagnosed bug is far from the truth and from the others"))
        seed += 1
        out.append(_make(seed, model, T=2, n=5, m=6, d=1, K=2, note="one feature", tag="onefeature",
                         alpha=alpha))
        seed += 1
        out.append(_make(seed, model, T=3, n=1, m=1, d=4, K=2, note="one example per set", tag="oneexample",
                         alpha=alpha))
        seed += 1
        if not regression:  # no probabilities to saturate
            out.append(_saturated(seed, model, K=2))
    if version != "1" and networks:
        for network in NETWORKS():
            out += network_cases(network, version="2")
    if version == "3":
        seed = 5000
        for model in MODELS:
            regression = models.get(model).targets == "real"
            out += _alone(seed, model, LINEAR_RATE if regression else 0.4)
            seed += 10
        if networks:
            for network in NETWORKS():
                out += network_cases(network)[len(network_cases(network, version="2")):]
            for network in CONV_NETWORKS():
                out += network_cases(network)
            for network in MASKED_NETWORKS():
                out += network_cases(network, mask=anil_mask(network))
    ids = [c.id for c in out]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    return out


def select(cases, *, models=MODELS, steps=STEPS, l2=False, rates=False, masked=False):
    """The cases a check runs: the chosen models and numbers of steps, plus every diagnostic case
    of those models; without ``l2`` (or ``rates``) the cases that need it are left out. ``masked``:
    False (the default) only the cases without an ``inner_mask``, True only those with one (a
    check with ``inner_mask``, or a results file declaring it), None every case."""
    return [c for c in cases
            if c.model in models
            and (c.inner_steps in steps or c.diagnostic or EDGE & set(c.tags))
            and (l2 or not c.l2) and (rates or not c.rates)
            and (masked is None or (c.mask is not None) == masked)]


# --- networks ----------------------------------------------------------------------------------

# ReLU cases keep every pre-activation at least this far from 0 at every inner iterate (support and
# query inputs): implementations differ by rounding, about 1e-15 of the scale, so none computes the
# other side of a kink, where ReLU' jumps (ReLU'(0) = 0 by convention, derivations/mlp.md).
RELU_MARGIN = 1e-6
NETWORK_STEP = 0.5  # the inner rate times the largest |eigenvalue| of the first support Hessian at theta


def network_name(model):
    """The prefix of a network's case ids: ``mlp-1x40x40x1-relu-mse``."""
    return models.get(model).slug


def sinusoid(model):
    """Whether ``model`` takes the MAML paper's sinusoid tasks: a network of one input and one real
    output."""
    model = models.get(model)
    return not model.linear and model.targets == "real" and model.dimensions(model.parameter_shape(None, None)) \
        == (1, (1,))


def _curvature(model, theta, X, y, rng, iterations=30):
    """The largest |eigenvalue| of the support Hessian at ``theta`` (power iteration with HVPs)."""
    v = rng.standard_normal(theta.shape)
    v /= np.linalg.norm(v)
    value = 1.0
    for _ in range(iterations):
        w = np.asarray(model.hvp(theta, X, y, v))
        value = float(np.linalg.norm(w))
        if value == 0:
            return 1.0
        v = w / value
    return value


def _image_network(model):
    """Whether ``model`` is drawn the version-3 way: images, or batch norm (its gamma and beta
    drawn away from PyTorch's 1 and 0 so that no derivative vanishes by symmetry)."""
    return models.get(model).input_ndim > 1 or bool(batch_norm_layers(model))


def batch_norm_layers(model):
    """The indices of a network's batch-norm layers (by their spec's kind)."""
    return tuple(i for i, layer in enumerate(getattr(models.get(model), "layers", ()))
                 if getattr(layer, "spec", lambda: {})().get("layer") in ("BatchNorm2d", "BatchNorm1d"))


def draw(model, rng, T, n, m):
    """A random problem for ``model``: an MLP's as in version 2 (:func:`refmaml.instances.draw`);
    for image networks and networks with batch norm, PyTorch's initialisation with batch norm's
    gamma in 1 +- 0.3 and beta in +-0.3, standard normal images ``(T, n, C, H, W)`` and targets."""
    model = models.get(model)
    if not _image_network(model):
        return instances.draw(rng, model, T=T, n=n, m=m)
    theta = np.array(model.random_parameters(rng, model.parameter_shape(None, None), None), dtype=np.float64)
    for i in batch_norm_layers(model):
        where = np.flatnonzero(np.asarray(model.mask(i)))
        half = len(where) // 2   # gamma, then beta (PyTorch's weight, bias)
        theta[where[:half]] = rng.uniform(0.7, 1.3, half)
        theta[where[half:]] = rng.uniform(-0.3, 0.3, len(where) - half)
    shape = tuple(model.input_shape)
    Xs, Xq = rng.standard_normal((T, n) + shape), rng.standard_normal((T, m) + shape)
    _, outputs = model.dimensions(theta.shape)
    return instances.Instance(theta, Xs, instances.targets(rng, model, (T, n), outputs), Xq,
                              instances.targets(rng, model, (T, m), outputs))


def kink_distance(model, p, *, inner_lr, inner_steps, l2=0.0, mask=None):
    """(O13): the smallest distance of any ReLU input from 0 and of any max-pool window's top two
    entries from a tie, at every inner iterate of every task (the inner loop adapting ``mask``),
    on the support and the query inputs (``model.kink_distance``, ``derivations/conv.md`` (C12))."""
    model = models.get(model)
    if not model.kinks:
        return float("inf")
    path = np.asarray(adapt(p.theta, p.Xs, p.ys, inner_lr=inner_lr, inner_steps=inner_steps, model=model,
                            l2=l2, inner_mask=mask, return_trajectory=True))
    return min(model.kink_distance(path[k, t][None], X[t][None, ...])
               for k in range(path.shape[0]) for t in range(path.shape[1]) for X in (p.Xs, p.Xq))


def mask_tag(mask):
    """The suffix of the case ids of a check with ``inner_mask``: ``mask`` and 8 hex digits."""
    import zlib

    return None if mask is None else f"mask{zlib.crc32(np.packbits(np.asarray(mask, dtype=bool)).tobytes()):08x}"


def _network_case(model, seed, *, T, n, m, K, l2=0.0, rates=False, diagnostic=False, note="", tag="", mask=None,
                  extra_tags=()):
    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        if sinusoid(model):  # the MAML paper's regression: y = A sin(x - phase), x in [-5, 5]
            theta = model.random_parameters(rng, model.parameter_shape(None, None), None)
            amplitude, phase = rng.uniform(0.1, 5.0, (T, 1)), rng.uniform(0, np.pi, (T, 1))
            Xs, Xq = rng.uniform(-5, 5, (T, n, 1)), rng.uniform(-5, 5, (T, m, 1))
            p = instances.Instance(theta, Xs, amplitude * np.sin(Xs[..., 0] - phase), Xq,
                                   amplitude * np.sin(Xq[..., 0] - phase))
        else:
            p = draw(model, rng, T, n, m)
        theta, Xs, ys, Xq, yq = p.theta, p.Xs, p.ys, p.Xq, p.yq
        alpha = NETWORK_STEP / _curvature(model, theta, Xs[0], ys[0], rng)
        inner_lr = alpha * rng.uniform(0.5, 1.5, theta.shape) if rates else float(alpha)
        if kink_distance(model, p, inner_lr=inner_lr, inner_steps=K, l2=l2, mask=mask) < RELU_MARGIN:
            continue
        break
    else:
        raise ValueError(f"no case for {network_name(model)} keeps the kink margin {RELU_MARGIN}")
    parts = [network_name(model), f"K{K}", f"T{T}", f"n{n}", f"m{m}"]
    parts += (["l2"] if l2 else []) + (["rates"] if rates else []) + ([tag] if tag else [])
    parts += list(extra_tags) + ([mask_tag(mask)] if mask is not None else [])
    tags = tuple(t for t, on in (("l2", bool(l2)), ("rates", rates), (tag, bool(tag))) if on) + tuple(extra_tags)
    mask = None if mask is None else np.array(mask, dtype=bool)
    return Case("-".join(parts), model, theta, Xs, ys, Xq, yq, inner_lr, K, float(l2), diagnostic, note, tags,
                mask)


def network_cases(model, version=VERSION, mask=None):
    """The cases of a network ``model`` (an ``MLP`` or any ``Sequential``, images included): for
    every number of steps in ``STEPS`` five regular cases (one task, three with and without
    ``l2``, two with learned rates), the diagnostic cases (``T = 4``, ``K = 2, 3``, with and
    without ``l2`` and rates) and one case with one example per set; from version 3 also the
    cases of one condition alone (one task, one inner step: ``l2``, rates, one example). Seeded by
    the architecture: the same model gives the same cases. ``mask``: the ``inner_mask`` of a
    check of meta-only parameters; the cases' ids then end in :func:`mask_tag`, and the kink
    margins hold along the masked inner loop."""
    import zlib

    base = zlib.crc32(network_name(model).encode()) % 2**20
    out, seed = [], base * 100
    kw = dict(mask=mask)
    for K in STEPS:
        for T, l2, rates in ((1, 0.0, False), (3, 0.0, False), (3, 0.1, False), (2, 0.0, True), (2, 0.1, True)):
            seed += 1
            out.append(_network_case(model, seed, T=T, n=5, m=7, K=K, l2=l2, rates=rates, **kw))
    for l2 in (0.0, 0.1):
        for rates in (False, True):
            for K in (2, 3):
                seed += 1
                out.append(_network_case(model, seed, T=4, n=6, m=9, K=K, l2=l2, rates=rates, diagnostic=True,
                                         tag="diagnostic", note="the bugs this network separates are far "
                                         "from the truth and from the others", **kw))
    seed += 1
    out.append(_network_case(model, seed, T=3, n=1, m=1, K=2, note="one example per set", tag="oneexample", **kw))
    if version in ("1", "2"):
        return out
    for l2, rates in ((0.1, False), (0.0, True)):
        seed += 1
        out.append(_network_case(model, seed, T=1, n=5, m=7, K=1, l2=l2, rates=rates, tag="alone",
                                 note=ALONE_NOTE, **kw))
    seed += 1
    out.append(_network_case(model, seed, T=1, n=1, m=1, K=1, tag="oneexample", extra_tags=("alone",),
                             note=ALONE_NOTE, **kw))
    return out


def NETWORKS(version=VERSION):
    """The MLPs of the version-2 vectors (and of version 3): the MAML paper's sinusoid regressor
    (1-40-40-1, ReLU, mse) and a small tanh softmax classifier (4-8-3)."""
    if version == "1":
        return ()
    return (models.MLP((1, 40, 40, 1), "relu", "mse"), models.MLP((4, 8, 3), "tanh", "softmax"))


def CONV_NETWORKS(version=VERSION):
    """The image networks of the version-3 vectors: the ConvNet preset in miniature (3 classes, 2
    blocks of 4 channels, images (1, 8, 8)) with ``BatchNorm2d`` (statistics of the set being
    evaluated), and the same network without batch norm (a ``Sequential``)."""
    if version != "3":
        return ()
    from ..models.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU

    plain = models.Sequential([Conv2d(1, 4, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(4, 4, 3, padding=1), ReLU(),
                               MaxPool2d(2), Flatten(), Linear(16, 3)], loss="softmax", input_shape=(1, 8, 8))
    return (models.ConvNet(3, blocks=2, channels=4, input_shape=(1, 8, 8)), plain)


def MASKED_NETWORKS(version=VERSION):
    """The networks whose cases the version-3 vectors hold a second time with ANIL's ``inner_mask``
    (:func:`anil_mask`: the last layer adapts, the rest only in the outer loop, maml.md (M10)): the
    ConvNet preset of ``CONV_NETWORKS``."""
    return CONV_NETWORKS(version)[:1]


def anil_mask(model):
    """ANIL's ``inner_mask`` of a network: ``model.mask(-1)``, its last layer's parameters."""
    return np.asarray(models.get(model).mask(-1), dtype=bool)


def all_networks(version=VERSION):
    """Every network whose cases the vectors of ``version`` hold."""
    return NETWORKS(version) + CONV_NETWORKS(version)
