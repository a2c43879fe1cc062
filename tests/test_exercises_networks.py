"""The exercises of ``derivations/exercises-networks.md``: every printed answer recomputed.

Each test reads the answer lines ("Answer: `...`", "Answer, <what>: `...`") of one exercise from the
markdown and compares them with what refmaml's own functions compute on the same instance (the
layers, ``MLP``, ``adam.step``, ``evaluate``, the oracle's answers, ``tutorial``), and with the
closed form where there is one. Tolerances of the printed answers (``check``):

* a decimal is the computed value rounded to its printed digits, so it must lie within half a unit
  of its last printed digit (times ``1 + 1e-9``, for the decimal's own binary representation);
* a whole number or a fraction ``p/q`` is exact; the computation reaches it through a few float64
  operations, each rounding by at most ``1.1e-16`` relative, so ``1e-12`` relative is far above
  rounding and far below any mistake.

Derivation-only exercises check their final identity on a random instance, each tolerance stated
where it is used.
"""

import math
import pathlib
import re
import statistics
from fractions import Fraction

import numpy as np

from refmaml import adam, evaluate, meta_value_and_grad, tutorial
from refmaml.models import MLP, linear
from refmaml.models import softmax as softmax_model
from refmaml.models.layers import BatchNorm1d, BatchNorm2d, Conv2d, MaxPool2d, Tanh
from refmaml.models.layers.conv import fold, patches
from refmaml.oracle import answers
from refmaml.oracle.cases import Case
from refmaml.tasks import Sinusoid

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATH = ROOT / "derivations" / "exercises-networks.md"
COVERED = {"mlp.md": "N", "conv.md": "C", "batchnorm.md": "B", "oracle.md": "O", "training.md": "T",
           "seed-errata.md": "E"}

EXERCISE = re.compile(r"^\*\*Exercise ([A-Z])\.(\d+)\*\*", re.M)
ANSWER = re.compile(r"^Answer(?:, (?P<name>[^:`]+))?: `(?P<value>[^`]+)`\s*$", re.M)
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:/\d+)?")


def text():
    return PATH.read_text(encoding="utf-8")


def sections():
    """``{file name: section text}`` for every ``## [name](name)`` section."""
    out = {}
    for part in re.split(r"^## ", text(), flags=re.M)[1:]:
        m = re.match(r"\[([\w.-]+\.md)\]\(\1\)", part)
        assert m, f"a section heading does not name its file: {part.splitlines()[0]!r}"
        out[m.group(1)] = part
    return out


def exercises():
    """``{"N.1": body}``: each exercise from its heading to the next exercise or section."""
    out = {}
    for name, part in sections().items():
        starts = list(EXERCISE.finditer(part))
        for m, nxt in zip(starts, starts[1:] + [None], strict=True):
            key = f"{m.group(1)}.{m.group(2)}"
            assert key not in out, f"Exercise {key} appears twice"
            out[key] = (name, part[m.start():nxt.start() if nxt else len(part)])
    return out


def answer_lines(key):
    """``{what: value}`` of exercise ``key`` (``""`` for a bare "Answer:")."""
    out = {}
    for m in ANSWER.finditer(exercises()[key][1]):
        name = (m.group("name") or "").strip()
        assert name not in out, f"Exercise {key}: two answers named {name!r}"
        out[name] = m.group("value")
    return out


def printed(value):
    """``[(number, tolerance)]`` of an answer's numbers, in reading order (module docstring)."""
    out = []
    for token in NUMBER.findall(value):
        if "/" in token or re.fullmatch(r"[-+]?\d+", token):
            exact = float(Fraction(token))
            out.append((exact, 1e-12 * max(1.0, abs(exact))))
        else:
            mantissa, _, exponent = token.lower().partition("e")
            digits = len(mantissa.partition(".")[2])
            out.append((float(token), 0.5 * 10.0 ** (int(exponent or 0) - digits) * (1 + 1e-9)))
    assert out, f"no number in the answer {value!r}"
    return out


def check(key, name, computed):
    """The answer ``name`` of exercise ``key`` is ``computed`` (a number or an array), entry by
    entry, to its printed precision."""
    value = answer_lines(key)[name]
    want = printed(value)
    got = np.ravel(np.asarray(computed, dtype=np.float64))
    assert got.size == len(want), f"Exercise {key} {name!r}: {got.size} values computed, {len(want)} printed"
    for g, (w, tol) in zip(got, want, strict=True):
        assert abs(g - w) <= tol, f"Exercise {key} {name!r}: printed {value}, computed {got}"


# The answers each test checks; test_every_answer_is_checked holds the markdown to this list.
CHECKED = {
    "N.1": {"", "largest value", "where"},
    "N.2": {"J", "(W1, W1) as GN, R, H", "(W2, W1) as GN, R, H"},
    "N.3": {"eigenvalues of the Gauss-Newton part", "determinant of the block", "smaller eigenvalue of the block",
            "smallest eigenvalue of H"},
    "N.4": {"parameters", "gradient flops", "HVP flops"},
    "C.1": {"output size", "unread rows and columns", "adjoint of rows 26 and 27"},
    "C.2": {"output", "gaps", "input adjoint", "(C10), complex step, central differences"},
    "C.3": {"parameters", "bound", "forward flops"},
    "C.4": {"stride 1, no padding", "stride 2, padding 1"},
    "B.1": {"output for eps 0", "output for eps 1e-5", "diagonal entry for eps 1e-5"},
    "B.2": {"tangent of b along a constant direction"},
    "B.3": {"first row"},
    "B.4": {"b, input adjoint, gradient of phi, gradient of psi", "input adjoint"},
    "B.5": {"per task", "pooled"},
    "O.1": {"truth F and its gradient", "drift D and its gradient (O2)", "in-place gradient (O3)"},
    "O.2": {"sum over tasks", "support loss summed"},
    "O.3": {"buffer", "printed loss"},
    "O.4": {"broadcast loss", "mse against the mean target, variance of the targets", "true mse"},
    "T.1": {"theta 1", "theta 2", "first step without correction"},
    "T.2": {"half-width", "interval"},
    "T.3": {"method, baseline, paired"},
    "T.4": {""},
    "T.5": {""},
    "E.1": {"meta-loss", "first order, exact", "ratio"},
    "E.2": {"correct", "line 1", "line 3"},
    "E.3": {"weights", "first weight over beta"},
    "E.4": set(),  # a derivation: (E7) checked on a random instance
}


# --- the file's shape ---------------------------------------------------------------------------

def test_each_covered_file_has_three_to_five_exercises():
    assert text().startswith("# Exercises: networks, the oracle and training\n")
    found = sections()
    assert set(found) == set(COVERED), sorted(found)
    by_file = {}
    for key, (name, _) in exercises().items():
        assert key[0] == COVERED[name], f"Exercise {key} sits in the section of {name}"
        by_file.setdefault(name, []).append(int(key.split(".")[1]))
    for name in COVERED:
        numbers = by_file.get(name, [])
        assert 3 <= len(numbers) <= 5, f"{name}: {len(numbers)} exercises"
        assert numbers == list(range(1, len(numbers) + 1)), f"{name}: exercises numbered {numbers}"


def test_every_exercise_has_a_folded_answer_and_inline_math_only():
    for key, (_, body) in exercises().items():
        opened = body.count("<details><summary>Answer</summary>")
        assert opened == 1 and body.count("</details>") == 1, f"Exercise {key}: {opened} folded answers"
        assert body.index("<details>") < min((m.start() for m in ANSWER.finditer(body)), default=len(body)), \
            f"Exercise {key}: an answer line before the fold"
    # test_derivations requires a label on every display; the exercises define none
    assert "$$" not in text()
    assert "\\tag" not in text()


def test_every_answer_is_checked():
    assert set(exercises()) == set(CHECKED)
    for key, names in CHECKED.items():
        assert set(answer_lines(key)) == names, f"Exercise {key}: {sorted(answer_lines(key))}"


# --- mlp.md -------------------------------------------------------------------------------------

def test_N1_second_derivative_of_tanh():
    layer = Tanh()

    def curvature(z):
        return layer.curvature(layer.forward((), np.asarray(z, dtype=np.float64))[1])

    check("N.1", "", curvature(0.5))
    t = math.tanh(0.5)
    check("N.1", "", -2 * t * (1 - t * t))
    # (N8) on a random instance: the complex step of the slope 1 - tanh^2 is the layer's curvature;
    # the complex step has no cancellation, so 1e-13 relative is rounding alone
    z = np.random.default_rng(0).uniform(-3, 3, 50)
    h = 1e-20
    step = layer.slope(layer.forward((), z + 1j * h)[1]).imag / h
    assert np.max(np.abs(step - curvature(z))) <= 1e-13 * np.max(np.abs(curvature(z)))
    # the largest |tanh''|, at artanh(1/sqrt 3), and nowhere larger on a fine grid
    where = math.atanh(1 / math.sqrt(3))
    check("N.1", "where", where)
    check("N.1", "largest value", abs(curvature(where)))
    check("N.1", "largest value", 4 / (3 * math.sqrt(3)))
    grid = np.linspace(-4, 4, 80001)
    assert np.max(np.abs(curvature(grid))) <= abs(curvature(where)) * (1 + 1e-15)


def test_N2_gauss_newton_split_of_a_1_1_1_tanh_network():
    model = MLP((1, 1, 1), "tanh", "mse")
    theta, X, y = np.array([0.5, 0.0, 1.0, 0.0]), np.array([[1.0]]), np.array([1.0])
    H = model.hessian(theta, X, y)
    _, hvp = model.grad_hvp(theta[None], X[None], y[None], 0.0)
    GN = np.stack([hvp(e[None], second_order=False)[0] for e in np.eye(4)], axis=-1)
    R = H - GN
    check("N.2", "(W1, W1) as GN, R, H", [GN[0, 0], R[0, 0], H[0, 0]])
    check("N.2", "(W2, W1) as GN, R, H", [GN[2, 0], R[2, 0], H[2, 0]])
    # the Gauss-Newton part is 2 J J^T (n = 1, W_1 = 2): J from the explicit product
    J = np.sqrt(GN[3, 3] / 2) * GN[3] / GN[3, 3]  # the row of c2 is 2 J_c2 J with J_c2 = 1
    check("N.2", "J", J)
    # the closed forms of the answer
    t = math.tanh(0.5)
    slope, curv, r = 1 - t * t, -2 * t * (1 - t * t), 2 * (t - 1)
    check("N.2", "J", [slope, slope, t, 1])
    check("N.2", "(W1, W1) as GN, R, H", [2 * slope**2, r * curv, 2 * slope**2 + r * curv])
    check("N.2", "(W2, W1) as GN, R, H", [2 * t * slope, r * slope, 2 * t * slope + r * slope])


def test_N3_relu_network_with_a_negative_eigenvalue():
    model = MLP((1, 1, 1), "relu", "mse")
    theta, X, y = np.array([1.0, 0.0, 0.0, 0.0]), np.array([[1.0]]), np.array([1.0])
    assert model.kink_distance(theta, X) >= 1.0  # the hidden pre-activation is 1, one unit from the kink
    H = model.hessian(theta, X, y)
    _, hvp = model.grad_hvp(theta[None], X[None], y[None], 0.0)
    GN = np.stack([hvp(e[None], second_order=False)[0] for e in np.eye(4)], axis=-1)
    # eigenvalues of 4x4 matrices of small integers: LAPACK's error is a few 1e-16, far below 1e-12
    check("N.3", "eigenvalues of the Gauss-Newton part", np.linalg.eigvalsh(GN))
    block = H[np.ix_([0, 2], [0, 2])]
    check("N.3", "determinant of the block", np.linalg.det(block))
    check("N.3", "smaller eigenvalue of the block", np.linalg.eigvalsh(block)[0])
    check("N.3", "smaller eigenvalue of the block", 1 - math.sqrt(5))
    eig = np.linalg.eigvalsh(H)
    check("N.3", "smallest eigenvalue of H", eig[0])
    cubic = np.sort(np.roots([1, -4, -8, 16]).real)
    check("N.3", "smallest eigenvalue of H", cubic[0])
    assert np.max(np.abs(np.sort(eig) - np.sort(np.r_[0.0, cubic]))) <= 1e-12
    assert eig[0] <= 1 - math.sqrt(5)  # interlacing


def test_N4_sizes_and_costs_of_the_sinusoid_network():
    model = MLP((1, 40, 40, 1), "relu", "mse")
    check("N.4", "parameters", model.size)
    check("N.4", "gradient flops", model.network.gradient_flops(10, 1, (model.size,)))
    check("N.4", "HVP flops", model.network.hvp_flops(10, 1, (model.size,)))
    sizes = (1, 40, 40, 1)
    products = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    check("N.4", "parameters", sum(b * (a + 1) for a, b in zip(sizes[:-1], sizes[1:], strict=True)))
    check("N.4", "gradient flops", 6 * 10 * products)
    check("N.4", "HVP flops", 12 * 10 * products)


# --- conv.md ------------------------------------------------------------------------------------

def test_C1_output_size_and_unread_rows():
    conv = Conv2d(1, 1, 5, stride=3, padding=(0, 2))
    out = conv.output_shape((1, 28, 28))
    check("C.1", "output size", out[1:])
    check("C.1", "output size", [(28 - 5) // 3 + 1, (28 + 4 - 5) // 3 + 1])
    check("C.1", "unread rows and columns", [(28 - 5) % 3, (28 + 4 - 5) % 3])
    rng = np.random.default_rng(1)
    params = (rng.normal(size=(1, 1, 5, 5)), rng.normal(size=1))
    a = rng.normal(size=(1, 1, 1, 28, 28))
    b, ctx = conv.forward(params, a)
    delta_a, _ = conv.vjp(params, a, ctx, rng.normal(size=b.shape), True)
    rows = np.max(np.abs(delta_a[0, 0, 0]), axis=1)
    unread = rows[26:]
    check("C.1", "adjoint of rows 26 and 27", np.max(unread))
    assert np.all(rows[:26] > 0) and np.all(np.max(np.abs(delta_a[0, 0, 0]), axis=0) > 0)
    # and the output ignores rows 26 and 27: changing them changes nothing, exactly
    moved = a.copy()
    moved[..., 26:, :] += 1.0
    assert np.array_equal(conv.forward(params, moved)[0], b)


def test_C2_max_pooling_with_a_tie():
    pool = MaxPool2d(2)
    a = np.array([[1, 4, 2, 5], [4, 0, 2, 1]], dtype=np.float64).reshape(1, 1, 1, 2, 4)
    b, S = pool.forward((), a)
    check("C.2", "output", b)
    check("C.2", "gaps", pool.kink_distance(a, S))
    delta_a, _ = pool.vjp((), a, S, np.array([1.0, -3.0]).reshape(1, 1, 1, 1, 2), True)
    check("C.2", "input adjoint", delta_a)
    a_dot = np.zeros_like(a)
    a_dot[..., 0, 1], a_dot[..., 1, 0] = 1.0, 3.0
    rule = pool.jvp((), a, S, a_dot, ())[..., 0, 0]
    h = 1e-20
    complex_step = pool.forward((), a + 1j * h * a_dot)[0].imag[..., 0, 0] / h
    # the map is piecewise linear and h = 2^-10 keeps every number exact in binary: central
    # differences are the average of the two one-sided slopes with no rounding at all
    s = 2.0 ** -10
    central = (pool.forward((), a + s * a_dot)[0] - pool.forward((), a - s * a_dot)[0])[..., 0, 0] / (2 * s)
    check("C.2", "(C10), complex step, central differences", [rule, complex_step, central])
    one_sided = [(pool.forward((), a + s * a_dot)[0] - b)[..., 0, 0] / s,
                 (b - pool.forward((), a - s * a_dot)[0])[..., 0, 0] / s]
    assert np.ravel(one_sided).tolist() == [3.0, 1.0]


def test_C3_a_wide_layer():
    conv = Conv2d(64, 64, 3, padding=1)
    check("C.3", "parameters", sum(math.prod(shape) for shape in conv.param_shapes))
    check("C.3", "bound", 1 / math.sqrt(conv.fan_in))
    check("C.3", "forward flops", conv.flops(1, (64, 28, 28)))
    check("C.3", "forward flops", 2 * 64 * 576 * 28 * 28)
    theta = conv.init(np.random.default_rng(2))
    check("C.3", "parameters", theta.size)
    # 36928 uniform draws on (-B, B): all inside, and the largest within 1% of B (the chance that
    # none exceeds 0.99 B is 0.99^36928, about 1e-161)
    bound = 1 / 24
    assert np.max(np.abs(theta)) <= bound and np.max(np.abs(theta)) > 0.99 * bound


def test_C4_fold_is_the_transpose_of_patches():
    ones = np.ones((4, 4))
    check("C.4", "stride 1, no padding", fold(ones, (1, 3, 3), (2, 2), (1, 1), (0, 0)))
    ones = np.ones((4, 4))  # 2 x 2 windows, 2 x 2 positions
    check("C.4", "stride 2, padding 1", fold(ones, (1, 3, 3), (2, 2), (2, 2), (1, 1)))
    # <patches(a), G> = <a, fold(G)> on a random instance with two channels, a 2 x 3 kernel, stride
    # (2, 1) and padding (1, 2): sums of about 100 products of order 1, so 1e-13 relative is rounding
    rng = np.random.default_rng(3)
    kernel, stride, padding = (2, 3), (2, 1), (1, 2)
    a = rng.normal(size=(2, 5, 6))
    A = patches(a, kernel, stride, padding)
    G = rng.normal(size=A.shape)
    left, right = np.sum(A * G), np.sum(a * fold(G, a.shape, kernel, stride, padding))
    assert abs(left - right) <= 1e-13 * np.sum(np.abs(A * G))


# --- batchnorm.md -------------------------------------------------------------------------------

# eps = 1e-300 stands for eps = 0: it is far below the rounding of the variances used here (of
# order 1), so s = 1 / sqrt(nu) to the last bit, while the layer keeps its positive guard.
ZERO = 1e-300


def _jacobian(bn, params, a):
    """The Jacobian of one channel's N values, column l the tangent (B4) along unit vector l."""
    ctx = bn.forward(params, a)[1]
    none = tuple(np.zeros_like(p) for p in params)
    cols = [bn.jvp(params, a, ctx, e.reshape(a.shape), none).ravel() for e in np.eye(a.size)]
    return np.stack(cols, axis=-1)


def test_B1_two_examples_by_hand():
    params = (np.array([2.0]), np.array([0.5]))
    a = np.array([1.0, 3.0]).reshape(1, 2, 1)
    check("B.1", "output for eps 0", BatchNorm1d(1, eps=ZERO).forward(params, a)[0])
    # any pair a1 < a2: the same output, and a Jacobian of zero (values of order 1 to 100: the
    # output rounds at a few 1e-16 of its size, the Jacobian at a few 1e-16 of phi s)
    rng = np.random.default_rng(4)
    for _ in range(5):
        pair = np.sort(rng.uniform(-100, 100, 2)).reshape(1, 2, 1)
        out = BatchNorm1d(1, eps=ZERO).forward(params, pair)[0]
        assert np.max(np.abs(out.ravel() - [-1.5, 2.5])) <= 1e-14
        assert np.max(np.abs(_jacobian(BatchNorm1d(1, eps=ZERO), params, pair))) <= 1e-14
    eps = 1e-5
    bn = BatchNorm1d(1, eps=eps)
    check("B.1", "output for eps 1e-5", bn.forward(params, a)[0])
    J = _jacobian(bn, params, a)
    check("B.1", "diagonal entry for eps 1e-5", J[0, 0])
    s = (1 + eps) ** -0.5
    check("B.1", "diagonal entry for eps 1e-5", 0.5 * 2.0 * eps * s**3)
    check("B.1", "output for eps 1e-5", [0.5 - 2 * s, 0.5 + 2 * s])


def test_B2_a_shift_of_the_input_changes_nothing():
    rng = np.random.default_rng(5)
    bn = BatchNorm2d(3)
    params = (rng.uniform(0.7, 1.3, 3), rng.uniform(-0.3, 0.3, 3))
    a = rng.normal(size=(2, 4, 3, 2, 2))            # two tasks, four examples, three channels
    shift = rng.normal(size=(2, 1, 3, 1, 1))        # a constant per task and channel
    b, ctx = bn.forward(params, a)
    # the mean subtraction rounds at about |shift| 1e-16 relative to the spread (of order 1)
    assert np.max(np.abs(bn.forward(params, a + shift)[0] - b)) <= 1e-14
    tangent = bn.jvp(params, a, ctx, np.broadcast_to(shift, a.shape).copy(), (np.zeros(3), np.zeros(3)))
    check("B.2", "tangent of b along a constant direction", np.max(np.abs(tangent)))
    delta_a, _ = bn.vjp(params, a, ctx, rng.normal(size=a.shape), True)
    # sums of 16 values of order 1 that cancel: 1e-14 is rounding
    assert np.max(np.abs(np.sum(delta_a, axis=(1, 3, 4)))) <= 1e-14
    # a positive scaling of a - mu, with eps = 0, changes nothing either
    bn0 = BatchNorm2d(3, eps=ZERO)
    mu = np.mean(a, axis=(1, 3, 4), keepdims=True)
    scaled = mu + rng.uniform(0.5, 2.0, size=(2, 1, 3, 1, 1)) * (a - mu)
    assert np.max(np.abs(bn0.forward(params, scaled)[0] - bn0.forward(params, a)[0])) <= 1e-14


def test_B3_the_examples_of_a_set_are_coupled():
    bn = BatchNorm1d(1, eps=ZERO)
    params = (np.array([1.0]), np.array([0.0]))
    a = np.array([0.0, 1.0, 2.0]).reshape(1, 3, 1)
    J = _jacobian(bn, params, a)
    check("B.3", "first row", J[0])
    check("B.3", "first row", [math.sqrt(6) / 12, -math.sqrt(6) / 6, math.sqrt(6) / 12])
    x_hat = bn.forward(params, a)[1][0].ravel()
    assert abs(np.sum(J[0])) <= 1e-15 and abs(J[0] @ x_hat) <= 1e-15  # sums of three terms of order 1


def test_B4_zero_variance():
    bn = BatchNorm1d(1, eps=1e-5)
    params = (np.array([2.0]), np.array([0.5]))
    a = np.array([3.0]).reshape(1, 1, 1)
    b, ctx = bn.forward(params, a)
    delta_a, (g_phi, g_psi) = bn.vjp(params, a, ctx, np.ones((1, 1, 1)), True)
    check("B.4", "b, input adjoint, gradient of phi, gradient of psi", [b.item(), delta_a.item(), g_phi.item(),
                                                                        g_psi.item()])
    a = np.array([3.0, 3.0]).reshape(1, 2, 1)
    b, ctx = bn.forward(params, a)
    delta_a, _ = bn.vjp(params, a, ctx, np.array([1.0, 0.0]).reshape(1, 2, 1), True)
    check("B.4", "input adjoint", delta_a)
    check("B.4", "input adjoint", [1e-5 ** -0.5, -(1e-5 ** -0.5)])
    assert np.all(b == 0.5)


def test_B5_tasks_must_not_share_statistics():
    bn = BatchNorm1d(1, eps=ZERO)
    params = (np.array([1.0]), np.array([0.0]))
    values = np.array([0.0, 2.0, 10.0, 12.0])
    per_task = bn.forward(params, values.reshape(2, 2, 1))[0]
    pooled = bn.forward(params, values.reshape(1, 4, 1))[0]
    check("B.5", "per task", per_task)
    check("B.5", "pooled", pooled)
    check("B.5", "pooled", np.array([-6.0, -4.0, 4.0, 6.0]) / math.sqrt(26))
    # pooled, task 1's outputs move with task 2's inputs; per task they do not
    J = _jacobian(bn, params, values.reshape(1, 4, 1))
    s, x_hat = 1 / math.sqrt(26), np.array([-6.0, -4.0, 4.0, 6.0]) / math.sqrt(26)
    coupling = -(s / 4) * (1 + np.outer(x_hat[:2], x_hat[2:]))  # (B6), of order 1e-2: 1e-15 is rounding
    assert np.max(np.abs(J[:2, 2:] - coupling)) <= 1e-15 and np.min(np.abs(coupling)) > 1e-3
    moved = values + np.array([0.0, 0.0, 1.0, 3.0])
    assert np.array_equal(bn.forward(params, moved.reshape(2, 2, 1))[0][0], per_task[0])


# --- oracle.md ----------------------------------------------------------------------------------

def instance(support=((2.0,), (0.0,))):
    """The section's instance: linear regression in one feature, two tasks, one step at 1/4."""
    ys = np.array(support, dtype=np.float64)
    return Case("exercises", "linear", np.zeros(1), np.ones(ys.shape + (1,)), ys, np.ones((2, 1, 1)),
                np.array([[0.0], [3.0]]), 0.25, 1)


def test_O1_drift_across_tasks():
    case = instance()
    right = answers.truth(case, case.inner_lr)
    check("O.1", "truth F and its gradient", [right.loss, right.grad[0]])
    exact, in_place = answers.drift(case, case.inner_lr)
    check("O.1", "drift D and its gradient (O2)", [exact.loss, exact.grad[0]])
    check("O.1", "in-place gradient (O3)", in_place.grad)
    # by hand, in exact fractions
    step = lambda phi, y: (phi + y) / 2  # noqa: E731
    F = Fraction(1, 2) * ((step(Fraction(0), 2) - 0) ** 2 + (step(Fraction(0), 0) - 3) ** 2)
    check("O.1", "truth F and its gradient", [F, Fraction(1, 2) * ((1 - 0) + (0 - 3))])
    phi1 = step(Fraction(0), 2)
    phi2 = step(phi1, 0)
    D = Fraction(1, 2) * ((phi1 - 0) ** 2 + (phi2 - 3) ** 2)
    adjoint = Fraction(1, 2) * (0 + Fraction(1, 2) * 2 * (phi2 - 3))
    adjoint = Fraction(1, 2) * (adjoint + Fraction(1, 2) * 2 * (phi1 - 0))
    check("O.1", "drift D and its gradient (O2)", [D, adjoint])
    check("O.1", "in-place gradient (O3)", Fraction(1, 2) * (2 * (phi1 - 0) + 2 * (phi2 - 3)))


def test_O2_sums_for_means():
    case = instance()
    (summed,) = answers.wrong(case, case.inner_lr, lr_grad=False)["sum_over_tasks"]
    check("O.2", "sum over tasks", [summed.loss, summed.grad[0]])
    loss, grad = meta_value_and_grad(case.theta, case.Xs, case.ys, case.Xq, case.yq, inner_lr=0.25,
                                     inner_steps=1, model="linear", reduction="sum")
    check("O.2", "sum over tasks", [loss, grad[0]])
    # the support set twice, summed: every variant of (O4) with m = 1 gives the same answer
    doubled = instance(support=((2.0, 2.0), (0.0, 0.0)))
    for variant in answers.wrong(doubled, doubled.inner_lr, lr_grad=False)["sum_over_examples"][:4]:
        check("O.2", "support loss summed", [variant.loss, variant.grad[0]])
    loss, grad = meta_value_and_grad(doubled.theta, doubled.Xs, doubled.ys, doubled.Xq, doubled.yq,
                                     inner_lr=2 * 0.25, inner_steps=1, model="linear")
    check("O.2", "support loss summed", [loss, grad[0]])
    # the sum is T times the mean on a random logistic instance: the same sums, scaled; 1e-14 is rounding
    rng = np.random.default_rng(6)
    T, n, m, d = 3, 5, 4, 3
    args = (rng.normal(size=d), rng.normal(size=(T, n, d)), rng.integers(0, 2, (T, n)).astype(float),
            rng.normal(size=(T, m, d)), rng.integers(0, 2, (T, m)).astype(float))
    mean = meta_value_and_grad(*args, inner_lr=0.3, inner_steps=2, model="logistic")
    total = meta_value_and_grad(*args, inner_lr=0.3, inner_steps=2, model="logistic", reduction="sum")
    assert abs(total[0] - T * mean[0]) <= 1e-14 * abs(total[0])
    assert np.max(np.abs(total[1] - T * mean[1])) <= 1e-14 * np.max(np.abs(total[1]))


def test_O3_the_seed_tutorials_code():
    case = instance()
    listing = answers.tutorial_code(case, case.inner_lr)[0]  # the buffer as is, the loss as printed
    check("O.3", "buffer", listing.grad)
    check("O.3", "printed loss", listing.loss)
    # by hand, (O6) with K = 1
    G, current, losses, pending = Fraction(0), Fraction(0), [], []
    for y_support, y_query in ((2, 0), (0, 3)):
        G += 2 * (current - y_support)
        current -= Fraction(1, 4) * G
        losses.append((current - y_query) ** 2)
        pending.append(2 * (current - y_query))
    check("O.3", "buffer", G + sum(pending))
    check("O.3", "printed loss", sum(losses) / 2)


def test_O4_broadcast_targets():
    theta, X = np.array([1.0]), np.array([[1.0], [2.0]])
    z, y = (X @ theta), np.array([0.0, 4.0])
    check("O.4", "true mse", linear.loss(theta, X, y))
    broadcast = np.mean((z[:, None] - y[None, :]) ** 2)
    check("O.4", "broadcast loss", broadcast)
    to_mean = linear.loss(theta, X, np.full(2, y.mean()))
    check("O.4", "mse against the mean target, variance of the targets", [to_mean, np.var(y)])
    check("O.4", "broadcast loss", to_mean + np.var(y))
    # (O14) on a random instance: both sides are means of about 50 squares of order 1; 1e-14 is rounding
    rng = np.random.default_rng(7)
    X, theta, y = rng.normal(size=(7, 2)), rng.normal(size=2), rng.normal(size=7)
    z = X @ theta
    left = np.mean((z[:, None] - y[None, :]) ** 2)
    right = linear.loss(theta, X, np.full(7, y.mean())) + np.var(y)
    assert abs(left - right) <= 1e-14 * left


# --- training.md --------------------------------------------------------------------------------

def test_T1_two_adam_steps():
    params = {"theta": np.zeros(1)}
    state = adam.init(params)
    params, state = adam.step(params, {"theta": np.ones(1)}, state, 0.1)
    check("T.1", "theta 1", params["theta"])
    params, state = adam.step(params, {"theta": -np.ones(1)}, state, 0.1)
    check("T.1", "theta 2", params["theta"])
    check("T.1", "theta 2", -0.1 / (1 + adam.EPS) + 0.1 / 19 / (1 + adam.EPS))
    check("T.1", "theta 2", -9 / 95)
    # without the correction (T6): the raw moments of the first step
    m1, v1 = (1 - adam.BETA1) * 1.0, (1 - adam.BETA2) * 1.0
    check("T.1", "first step without correction", -0.1 * m1 / (math.sqrt(v1) + adam.EPS))
    check("T.1", "first step without correction", -0.1 * math.sqrt(10))


def test_T2_a_confidence_interval():
    values = [0.6, 0.8, 0.7, 0.9, 0.5]
    summary = evaluate.summarize(values)
    check("T.2", "half-width", summary.half_width)
    check("T.2", "interval", summary.interval)
    z = statistics.NormalDist().inv_cdf(0.975)
    half = z * statistics.stdev(values) / math.sqrt(5)
    check("T.2", "half-width", half)
    check("T.2", "interval", [0.7 - half, 0.7 + half])


def test_T3_paired_differences():
    method, baseline = np.array([0.70, 0.80, 0.90]), np.array([0.65, 0.74, 0.86])
    widths = [evaluate.summarize(v).half_width for v in (method, baseline, method - baseline)]
    check("T.3", "method, baseline, paired", widths)
    z = statistics.NormalDist().inv_cdf(0.975)
    check("T.3", "method, baseline, paired", [z * statistics.stdev(v) / math.sqrt(3)
                                              for v in (method.tolist(), baseline.tolist(),
                                                        (method - baseline).tolist())])


def test_T4_accuracy_with_ties():
    P = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    # one-hot inputs and Theta's rows the log-probabilities: the logits are log P, the softmax P,
    # and the ties are exact (equal logits)
    Theta, X = np.log(P), np.eye(3)
    Theta[2] = 0.0
    accuracy, _ = evaluate.query_metrics("softmax", Theta[None], X[None], np.array([[0, 1, 2]]))
    check("T.4", "", accuracy)
    check("T.4", "", (1 + 1 / 2 + 1 / 3) / 3)


def test_T5_what_pre_training_sees_of_the_sinusoids():
    (a_lo, a_hi), (p_lo, p_hi) = Sinusoid.AMPLITUDE, Sinusoid.PHASE
    mean_amplitude = (a_lo + a_hi) / 2
    check("T.5", "", 2 * mean_amplitude / math.pi)
    # E[a sin(x - phi)] over the family's uniform laws by Gauss-Legendre quadrature (20 nodes
    # integrate these smooth periodic pieces to rounding), against -(2 a_bar / pi) cos x
    nodes, weights = np.polynomial.legendre.leggauss(20)
    amps = a_lo + (a_hi - a_lo) * (nodes + 1) / 2
    phases = p_lo + (p_hi - p_lo) * (nodes + 1) / 2
    w = np.outer(weights, weights) / 4  # the uniform densities times the Jacobians of the maps
    for x in np.linspace(-5, 5, 11):
        mean = np.sum(w * amps[:, None] * np.sin(x - phases[None, :]))
        assert abs(mean - (-(2 * mean_amplitude / math.pi) * math.cos(x))) <= 1e-13


# --- seed-errata.md -----------------------------------------------------------------------------

def test_E1_the_tutorials_first_order_update():
    args = (np.zeros(1), np.ones((1, 1, 1)), np.ones((1, 1)), np.ones((1, 1, 1)), np.zeros((1, 1)))
    loss, exact = meta_value_and_grad(*args, inner_lr=1.0, inner_steps=1, model="logistic")
    _, first = meta_value_and_grad(*args, inner_lr=1.0, inner_steps=1, model="logistic", first_order=True)
    check("E.1", "meta-loss", loss)
    check("E.1", "first order, exact", [first[0], exact[0]])
    check("E.1", "ratio", first[0] / exact[0])
    sigma = 1 / (1 + math.exp(-0.5))
    check("E.1", "meta-loss", math.log1p(math.exp(0.5)))
    check("E.1", "first order, exact", [sigma, 0.75 * sigma])


def test_E2_the_gradient_lines_of_section_4_2():
    theta, X, y = np.array([0.1, 0.1]), np.array([[1.0, 2.0]]), np.array([0.0])
    correct = tutorial.linear_model_gradient(theta, X, y)
    check("E.2", "correct", correct)
    check("E.2", "line 1", tutorial.gradient_line(theta, X, y, line=1, f="linear"))
    check("E.2", "line 3", tutorial.gradient_line(theta, X, y, line=3, f="linear"))
    # the correct gradient is the derivative of the loss (E1): the complex step of it (no
    # cancellation: 1e-13 relative is rounding)
    h = 1e-20
    step = np.array([tutorial.cross_entropy(theta + 1j * h * e, X, y, "linear").imag / h for e in np.eye(2)])
    assert np.max(np.abs(step - correct)) <= 1e-13 * np.max(np.abs(correct))


def _softmax_tasks(rng, N, d=6, C=2, rows=8):
    return [(rng.normal(size=(rows, d)), rng.integers(0, C, rows)) for _ in range(N)]


def test_E3_the_buffer_that_is_never_zeroed():
    N, alpha, beta = 5, 0.1, 0.01
    check("E.3", "weights", [alpha * (N - i + 1) + beta for i in range(1, N + 1)])
    check("E.3", "first weight over beta", (alpha * N + beta) / beta)
    # read the weights off the listing itself: Theta_0 - Theta^+ - beta sum h_j = sum_i w_i g_i, with
    # five generic support gradients of 12 entries; least squares recovers the w_i to about 1e-13
    # (the conditioning of five random vectors), far below the printed two digits
    rng = np.random.default_rng(8)
    theta = rng.uniform(-0.5, 0.5, (6, 2))
    support, query = _softmax_tasks(rng, N), _softmax_tasks(rng, N)
    run = tutorial.code_step(theta, support, query, inner_lr=alpha, outer_lr=beta)
    G = np.stack([g.ravel() for g in run.support_grads], axis=1)
    rest = (theta - run.theta - beta * sum(run.query_grads)).ravel()
    weights = np.linalg.lstsq(G, rest, rcond=None)[0]
    check("E.3", "weights", weights)
    assert np.linalg.norm(G @ weights - rest) <= 1e-13 * np.linalg.norm(rest)
    closed = tutorial.code_step_closed_form(theta, support, query, inner_lr=alpha, outer_lr=beta)
    assert np.max(np.abs(closed - run.theta)) <= 1e-14 * np.max(np.abs(run.theta))


def test_E4_the_listing_without_its_inner_step():
    # (E7) on a random instance: sums of ten gradients of order 1, 1e-14 relative is rounding
    rng = np.random.default_rng(9)
    theta, beta = rng.uniform(-0.5, 0.5, (6, 2)), 0.01
    support, query = _softmax_tasks(rng, 4), _softmax_tasks(rng, 4)
    run = tutorial.code_step(theta, support, query, inner_lr=0.0, outer_lr=beta)
    pooled = sum(softmax_model.grad(theta, X, y) for X, y in support + query)
    assert np.max(np.abs(run.theta - (theta - beta * pooled))) <= 1e-14 * np.max(np.abs(theta))
    # and MAML at alpha = 0 is the query part alone (M7): the listing's surplus is the support part
    loss, grad = meta_value_and_grad(theta, np.stack([X for X, _ in support]), np.stack([y for _, y in support]),
                                     np.stack([X for X, _ in query]), np.stack([y for _, y in query]),
                                     inner_lr=0.0, inner_steps=1, model="softmax", reduction="sum")
    surplus = (theta - run.theta) / beta - grad
    support_part = sum(softmax_model.grad(theta, X, y) for X, y in support)
    assert np.max(np.abs(surplus - support_part)) <= 1e-12 * np.max(np.abs(support_part))
    assert np.max(np.abs(support_part)) > 0.1
