"""Task families: seeded generators of few-shot tasks, ``derivations/training.md`` (T1)-(T4), (T13), (T14).

A family is a distribution over tasks. Every task is named by a split
(``"train"`` or ``"test"``) and an index, and everything about it (its true
parameters, its classes, its examples) comes from a random generator seeded by
``(family seed, split, index)`` alone. Meta-training draws indices at random
from the ``"train"`` split; the held-out tasks are ``"test"`` tasks ``0..T-1``.
The two splits never share a task: a synthetic task's parameters come from a
stream the other split never reads, and the digits splits use disjoint classes.

Batches are NumPy arrays on the host (``Xs (T, n, d)``, ``ys (T, n)``,
``Xq (T, m, d)``, ``yq (T, m)``, float64 features; images ``(T, n, 1, 8, 8)``); the trainer
moves each batch to its array library once.

Families:

* ``synthetic-binary`` (T1): logistic tasks whose true weights are a shared
  offset plus a task-specific part on a few relevant features, with random sign.
* ``synthetic-nway`` (T2): the same structure for softmax tasks of ``ways`` classes.
* ``digits-binary`` and ``digits-nway`` (T3): scikit-learn's bundled 8 x 8
  handwritten digits (no download), meta-train classes 0-5, meta-test classes 6-9.
* ``sinusoid`` (T13): the MAML paper's first experiment, regression of ``A sin(x - phi)``
  with a 1-40-40-1 ReLU network (``refmaml.models.MLP``). Its training batches are drawn
  in one vectorised call from the run's generator (the generator's stream is the tasks'
  identity); its held-out tasks are seeded per index as above.
* ``digit-images`` (T14): few-shot image classification on the same digits as 1 x 8 x 8 images,
  each digit turned by 0, 90, 180 and 270 degrees into four classes (40 classes; the Omniglot
  protocol), meta-train digits 0-5 and 7-8 (32 classes), meta-test digits 6 and 9 (8 classes, all
  four turns of both: a 6 turned by 180 degrees is close to a 9); ``ways``-way tasks with labels
  in random order, learned by a small convolutional network (``refmaml.models.ConvNet``).
"""

import dataclasses
import functools

import numpy as np

from . import _validate, models
from .models import MLP

SPLITS = {"train": 0, "test": 1}
INDEX_LIMIT = 2**62  # training task indices are drawn from [0, INDEX_LIMIT)
DIGITS_TRAIN_CLASSES = (0, 1, 2, 3, 4, 5)
DIGITS_TEST_CLASSES = (6, 7, 8, 9)
# digit-images (T14): a class is (digit, quarter turns), numbered digit + 10 * turns; the split is
# by digit, so every turn of a meta-test digit is a meta-test class
IMAGE_TRAIN_DIGITS = (0, 1, 2, 3, 4, 5, 7, 8)
IMAGE_TEST_DIGITS = (6, 9)
NETWORK_FAMILIES = ("sinusoid", "digit-images")  # families whose model is a network (ANIL needs layers)


@dataclasses.dataclass(frozen=True)
class Batch:
    """A stack of tasks: support ``(Xs, ys)``, query ``(Xq, yq)`` and, for synthetic
    families, each task's true parameters ``truth (T,) + P`` (``None`` for real data)."""

    Xs: np.ndarray
    ys: np.ndarray
    Xq: np.ndarray
    yq: np.ndarray
    truth: np.ndarray | None = None


def _task_rng(seed, split, index):
    """The generator of one task: seeded by (family seed, split, index) only (T4)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLITS[split], index)))


class Family:
    """Common machinery; subclasses define ``model``, ``d``, ``classes`` and ``_task``."""

    name = ""
    model = ""
    d = 0
    classes = 2
    regression = False  # True: real targets, scored by the loss (MSE) alone
    eval_query = None  # query examples per held-out task in the final evaluation (None: as in training)

    @property
    def parameter_shape(self):
        """Shape of the model's parameters: ``(d,)`` (logistic) or ``(d, C)`` (softmax)."""
        return models.get(self.model).parameter_shape(self.d, self.classes)

    def initial(self, seed):
        """The parameters every method starts from: zeros for the linear models (T9)."""
        return np.zeros(self.parameter_shape)

    def batch(self, split, indices, n, m):
        """The tasks ``indices`` of ``split``, each with ``n`` support and ``m`` query examples."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}; got {split!r}")
        n, m = _validate.integer(n, "n (support examples)", 1), _validate.integer(m, "m (query examples)", 1)
        self._check_sizes(n, m)
        parts = [self._task(_task_rng(self.seed, split, int(i)), split, n, m) for i in indices]
        if not parts:
            raise ValueError("a batch needs at least one task")
        X = np.stack([p[0] for p in parts])
        y = np.stack([p[1] for p in parts])
        truth = None if parts[0][2] is None else np.stack([p[2] for p in parts])
        return Batch(X[:, :n], y[:, :n], X[:, n:], y[:, n:], truth)

    def sample(self, rng, T, n, m):
        """``T`` meta-training tasks, their indices drawn from ``rng``."""
        T = _validate.integer(T, "T (tasks per batch)", 1)
        return self.batch("train", rng.integers(0, INDEX_LIMIT, size=T), n, m)

    def held_out(self, T, n, m):
        """The first ``T`` meta-test tasks: the same tasks and examples on every call."""
        return self.batch("test", range(_validate.integer(T, "T (held-out tasks)", 1)), n, m)

    def _check_sizes(self, n, m):
        pass

    def describe(self):
        """The family's definition, for results files."""
        return {"name": self.name, "model": self.model, "d": self.d, "classes": self.classes,
                **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


class _Synthetic(Family):
    """True parameters ``W_t = B + spread * Z_t`` with ``Z_t`` nonzero on the first
    ``relevant`` features only (T1), (T2); features ``x ~ N(0, I_d)``; labels drawn
    from the model's own probabilities at ``W_t``."""

    def __init__(self, d=20, relevant=2, offset=2.0, spread=3.0, seed=0):
        self.d = _validate.integer(d, "d", 1)
        self.relevant = _validate.integer(relevant, "relevant", 1)
        if self.relevant > self.d:
            raise ValueError(f"relevant must be <= d = {self.d}; got {self.relevant}")
        self.offset = _validate.nonnegative(offset, "offset")
        self.spread = _validate.nonnegative(spread, "spread")
        self.seed = _validate.integer(seed, "seed", 0)
        # The shared offset B: a fixed direction (from the family seed) scaled to norm `offset`.
        B = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(2,))).standard_normal(
            self.parameter_shape)
        self._B = self.offset * B / np.linalg.norm(B, axis=0)

    @property
    def shared_offset(self):
        """``B``, the part of the true parameters every task shares (a copy)."""
        return self._B.copy()

    def _truth(self, rng):
        W = self._B.copy()
        W[: self.relevant] += self.spread * rng.standard_normal((self.relevant,) + self.parameter_shape[1:])
        return W

    def _task(self, rng, split, n, m):
        W = self._truth(rng)
        X = rng.standard_normal((n + m, self.d))
        return X, self._labels(rng, X @ W), W


class SyntheticBinary(_Synthetic):
    """(T1): logistic tasks, ``w_t = b + spread * z_t``, ``z_t ~ N(0, I_r)`` on features ``0..r-1``;
    ``y ~ Bernoulli(sigmoid(x . w_t))``."""

    name = "synthetic-binary"
    model = "logistic"

    def _labels(self, rng, z):
        p = np.exp(-np.logaddexp(0.0, -z))
        return (rng.random(z.shape) < p).astype(np.float64)


class SyntheticNWay(_Synthetic):
    """(T2): softmax tasks of ``ways`` classes, ``W_t = B + spread * Z_t`` (``Z_t`` nonzero on
    rows ``0..r-1``); ``y ~ Categorical(softmax(x W_t))``."""

    name = "synthetic-nway"
    model = "softmax"

    def __init__(self, ways=3, **options):
        self.classes = _validate.integer(ways, "ways", 2)
        super().__init__(**options)

    def _labels(self, rng, Z):
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        cdf = np.cumsum(P / P.sum(axis=1, keepdims=True), axis=1)
        u = rng.random((Z.shape[0], 1))
        return np.minimum((u > cdf).sum(axis=1), self.classes - 1).astype(np.int64)


def _sklearn_digits():
    """scikit-learn's bundled digits, ``(images (1797, 8, 8), labels (1797,))``, pixels 0..16."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "the digits families need scikit-learn, which ships the data (no download): "
            "pip install 'refmaml[data]'"
        ) from None
    data = load_digits()
    return data.images, data.target.astype(np.int64)


def load_digits_data():
    """scikit-learn's bundled digits as ``(X (1797, 65), y (1797,))``: pixels / 16 and a ones column."""
    images, y = _sklearn_digits()
    X = images.reshape(images.shape[0], -1) / 16.0
    return np.concatenate([X, np.ones((X.shape[0], 1))], axis=1), y


class Digits(Family):
    """(T3): ``ways``-way tasks on handwritten digits. A task picks ``ways`` distinct classes of its
    split (meta-train: 0-5, meta-test: 6-9) in random order (class ``j`` of the pick gets label
    ``j``), then ``n / ways`` support and ``m / ways`` query images of each, all distinct."""

    def __init__(self, ways=2, seed=0):
        self.classes = _validate.integer(ways, "ways", 2)
        if self.classes > len(DIGITS_TEST_CLASSES):
            raise ValueError(f"ways must be <= {len(DIGITS_TEST_CLASSES)} (the meta-test classes); "
                             f"got {self.classes}")
        self.seed = _validate.integer(seed, "seed", 0)
        self.name = "digits-binary" if self.classes == 2 else "digits-nway"
        self.model = "logistic" if self.classes == 2 else "softmax"
        self._X, self._y = load_digits_data()
        self.d = self._X.shape[1]
        self._pools = {c: np.flatnonzero(self._y == c) for c in range(10)}

    def describe(self):
        return {"name": self.name, "model": self.model, "d": self.d, "classes": self.classes,
                "ways": self.classes, "seed": self.seed, "train_classes": list(DIGITS_TRAIN_CLASSES),
                "test_classes": list(DIGITS_TEST_CLASSES)}

    def _check_sizes(self, n, m):
        for value, name in ((n, "n (support examples)"), (m, "m (query examples)")):
            if value % self.classes:
                raise ValueError(f"{name} must be a multiple of ways = {self.classes} (the same number "
                                 f"of images of each class); got {value}")
        smallest = min(len(p) for p in self._pools.values())
        if (n + m) // self.classes > smallest:
            raise ValueError(f"n + m = {n + m} asks for {(n + m) // self.classes} images of each class; "
                             f"the smallest class has {smallest}")

    def _task(self, rng, split, n, m):
        pick = rng.permutation(DIGITS_TRAIN_CLASSES if split == "train" else DIGITS_TEST_CLASSES)
        pick = pick[: self.classes]
        per_class = [(n // self.classes), (m // self.classes)]
        chosen = [rng.choice(self._pools[int(c)], sum(per_class), replace=False) for c in pick]
        support = np.concatenate([c[: per_class[0]] for c in chosen])
        query = np.concatenate([c[per_class[0]:] for c in chosen])
        rows = np.concatenate([support, query])
        labels = np.concatenate([np.full(per_class[0], j) for j in range(self.classes)]
                                + [np.full(per_class[1], j) for j in range(self.classes)])
        y = labels.astype(np.float64) if models.get(self.model).targets == "binary" else labels.astype(np.int64)
        return self._X[rows], y, None


class _NetworkFamily(Family):
    """A family whose ``model`` is a network object (not a registered name): its parameters are one
    flat vector, and every method starts from PyTorch's default initialisation of the network."""

    @property
    def parameter_shape(self):
        return (self.model.size,)

    def initial(self, seed):
        """PyTorch's default initialisation of the network, seeded (the model's ``init``)."""
        return self.model.init(seed)


class Sinusoid(_NetworkFamily):
    """(T13): ``y = A sin(x - phi)`` with ``A ~ U[0.1, 5]``, ``phi ~ U[0, pi]``, ``x ~ U[-5, 5]``
    (Finn, Abbeel and Levine 2017, section 5.1), learned by ``MLP((1,) + hidden + (1,), activation,
    "mse")``: 1-40-40-1 with ReLU by default. Held-out tasks are scored on ``eval_query`` query
    points (100) instead of the training query size."""

    name = "sinusoid"
    regression = True
    eval_query = 100
    AMPLITUDE, PHASE, INPUT = (0.1, 5.0), (0.0, np.pi), (-5.0, 5.0)

    def __init__(self, hidden=(40, 40), activation="relu", seed=0):
        self.seed = _validate.integer(seed, "seed", 0)
        hidden = tuple(_validate.integer(h, "hidden", 1) for h in hidden)
        self.model = MLP((1,) + hidden + (1,), activation, "mse")
        self.hidden, self.activation = hidden, activation
        self.d, self.classes = 1, None

    def describe(self):
        return {"name": self.name, "model": repr(self.model), "d": 1, "classes": None, "seed": self.seed,
                "amplitude": list(self.AMPLITUDE), "phase": list(self.PHASE), "input": list(self.INPUT),
                "eval_query": self.eval_query}

    def _draw(self, rng, shape, n):
        """Amplitudes and phases ``shape``, inputs ``shape + (n,)``, in that order from ``rng``."""
        A = rng.uniform(*self.AMPLITUDE, shape)
        phi = rng.uniform(*self.PHASE, shape)
        x = rng.uniform(*self.INPUT, shape + (n,))
        return A, phi, x

    def _task(self, rng, split, n, m):
        A, phi, x = self._draw(rng, (), n + m)
        return x[:, None], A * np.sin(x - phi), None

    def function(self, split, index):
        """``(A, phi)`` of task ``index`` of ``split``: the curve a held-out task samples."""
        A, phi, _ = self._draw(_task_rng(self.seed, split, int(index)), (), 0)
        return float(A), float(phi)

    def sample(self, rng, T, n, m):
        """``T`` meta-training tasks drawn at once from ``rng`` (T13)."""
        T = _validate.integer(T, "T (tasks per batch)", 1)
        n, m = _validate.integer(n, "n (support examples)", 1), _validate.integer(m, "m (query examples)", 1)
        A, phi, x = self._draw(rng, (T,), n + m)
        y = A[:, None] * np.sin(x - phi[:, None])
        X = x[..., None]
        return Batch(X[:, :n], y[:, :n], X[:, n:], y[:, n:], None)


def load_digit_images():
    """scikit-learn's bundled digits as images ``(X (1797, 1, 8, 8), y (1797,))``: pixels / 16 in
    ``[0, 1]``, one channel, rows top to bottom (no ones column)."""
    images, y = _sklearn_digits()
    return (images / 16.0)[:, None, :, :].astype(np.float64), y


def image_class(digit, turns):
    """The class number of ``digit`` turned by ``turns`` quarter turns (T14): ``digit + 10 turns``."""
    return int(digit) + 10 * int(turns)


class DigitImages(_NetworkFamily):
    """(T14): ``ways``-way ``n / ways``-shot image classification on the digits as ``(1, 8, 8)``
    images. With ``rotations`` (the default) each digit turned by ``k`` quarter turns
    (``np.rot90``, counterclockwise, ``k = 0..3``) is a class of its own, ``digit + 10 k``, as the
    Omniglot protocol turns characters: 40 classes, the split by digit (meta-train: the turns of
    :data:`IMAGE_TRAIN_DIGITS`, meta-test: of :data:`IMAGE_TEST_DIGITS`), so no turned copy of a
    meta-test class is ever trained on. Without, the ten digits: meta-train 0-4, meta-test 5-9.
    A task picks ``ways`` distinct classes of its split in random order (the ``j``-th picked gets
    label ``j``: a random permutation of the labels per task), then ``n / ways`` support and
    ``m / ways`` query images of each, all distinct. The model is ``ConvNet(classes=ways,
    blocks, channels, input_shape=(1, 8, 8))`` with the softmax head."""

    name = "digit-images"

    def __init__(self, ways=5, rotations=True, blocks=2, channels=8, seed=0):
        self.classes = _validate.integer(ways, "ways", 2)
        if not isinstance(rotations, bool):
            raise TypeError(f"rotations must be True or False; got {rotations!r}")
        self.rotations = rotations
        self.blocks = _validate.integer(blocks, "blocks", 1)
        self.channels = _validate.integer(channels, "channels", 1)
        if 8 % 2**self.blocks:
            raise ValueError(f"blocks must be at most 3 (each halves the 8 x 8 image); got {self.blocks}")
        self.seed = _validate.integer(seed, "seed", 0)
        if rotations:
            turns = range(4)
            self.train_classes = tuple(image_class(d, k) for k in turns for d in IMAGE_TRAIN_DIGITS)
            self.test_classes = tuple(image_class(d, k) for k in turns for d in IMAGE_TEST_DIGITS)
        else:
            self.train_classes, self.test_classes = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
        smallest = min(len(self.train_classes), len(self.test_classes))
        if self.classes > smallest:
            raise ValueError(f"ways must be <= {smallest} (the classes of the smaller split); got {self.classes}")
        images, digits = load_digit_images()
        self._pools = {}
        for c in self.train_classes + self.test_classes:
            turned = np.rot90(images[digits == c % 10], k=c // 10, axes=(2, 3))
            self._pools[c] = np.ascontiguousarray(turned)
        self.d = 64

    @functools.cached_property
    def model(self):
        """``ConvNet(classes=ways, blocks, channels, input_shape=(1, 8, 8))``, made when first asked for."""
        from .models import ConvNet

        return ConvNet(classes=self.classes, blocks=self.blocks, channels=self.channels, input_shape=(1, 8, 8))

    def describe(self):
        return {"name": self.name, "model": repr(self.model), "d": self.d, "input_shape": [1, 8, 8],
                "classes": self.classes, "ways": self.classes, "rotations": self.rotations,
                "blocks": self.blocks, "channels": self.channels, "seed": self.seed,
                "train_classes": list(self.train_classes), "test_classes": list(self.test_classes)}

    _check_sizes = Digits._check_sizes  # the same rule: whole shots of every class, within its pool

    def _task(self, rng, split, n, m):
        pick = rng.permutation(self.train_classes if split == "train" else self.test_classes)[: self.classes]
        shots, queries = n // self.classes, m // self.classes
        chosen = [self._pools[int(c)][rng.choice(len(self._pools[int(c)]), shots + queries, replace=False)]
                  for c in pick]
        X = np.concatenate([c[:shots] for c in chosen] + [c[shots:] for c in chosen])
        y = np.concatenate([np.full(shots, j) for j in range(self.classes)]
                           + [np.full(queries, j) for j in range(self.classes)])
        return X, y.astype(np.int64), None


FAMILIES = {
    "synthetic-binary": SyntheticBinary,
    "synthetic-nway": SyntheticNWay,
    "digits-binary": lambda **kw: Digits(ways=2, **kw),
    "digits-nway": lambda **kw: Digits(**{"ways": 3, **kw}),
    "sinusoid": Sinusoid,
    "digit-images": DigitImages,
}


def family(name, **options):
    """The family called ``name`` (one of :data:`FAMILIES`), with its options."""
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}; got {name!r}")
    return FAMILIES[name](**options)
