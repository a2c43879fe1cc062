"""The answers of derivations/exercises-core.md are right.

The exercise file has one section per derivation file it covers, each with three to five
exercises ``**Exercise X.k**``, each followed by a folded answer. A numeric answer ends in a line
``Answer ...: `v1, v2, ...` `` of exact fractions or decimals. Every such value is computed here
twice, with refmaml's own functions and with the closed form of the answer, and both must match
the printed value:

* a fraction (or integer) to 1e-12 relative, with an absolute floor of 1e-12 for the answers 0:
  every answer is a few rounded operations on exact inputs of order one, so the computed values
  carry errors near 1e-15, and the order of a BLAS summation cannot move them by 1e-12; an error
  in a formula moves them by far more (the answers are fractions of small denominators, no two
  candidates closer than 1e-3). Implicit MAML gets 1e-10, the bound (V14) of its solver.
* a decimal to half a unit of its last printed digit (plus 1e-12 relative, so that a value on a
  rounding boundary is not decided by the last bit).

The derivation exercises ("Answer: a derivation") have a test each that checks the identity the
exercise proves on a random instance.
"""

import math
import pathlib
import re
from decimal import Decimal
from fractions import Fraction as Fr

import numpy as np
import pytest

import refmaml
from refmaml import check, costs, dual, models, policy, problem, special
from refmaml.models import MLP, Sequential, layers, linear, logistic, softmax
from refmaml.variants.imaml import conjugate_gradient

PATH = pathlib.Path(__file__).resolve().parent.parent / "derivations" / "exercises-core.md"
FILES = ["logistic.md", "softmax.md", "models.md", "linear.md", "maml.md", "dual.md", "variants.md",
         "checks.md", "range.md", "costs.md"]
PREFIX = {"logistic.md": "L", "softmax.md": "S", "models.md": "H", "linear.md": "Q", "maml.md": "M",
          "dual.md": "G", "variants.md": "V", "checks.md": "D", "range.md": "R", "costs.md": "K"}
SECTION = re.compile(r"^## \[([a-z-]+\.md)\]\(\1\)", re.M)
EXERCISE = re.compile(r"^\*\*Exercise ([A-Z]\.\d+)\*\* ", re.M)
ANSWER = re.compile(r"<details><summary>Answer</summary>\n(.*?)\n</details>", re.S)
NUMBERS = re.compile(r"^Answer\b[^`]*?: `([^`]+)`[ \t]*$", re.M)
DERIVATION = re.compile(r"^Answer: a derivation", re.M)

EXACT_RTOL = 1e-12
EPS = float(np.finfo(np.float64).eps)


def a(*rows):
    return np.array(rows, dtype=np.float64)


def sections():
    """``{file name: section text}``, in the order of the exercise file."""
    text = PATH.read_text(encoding="utf-8")
    heads = list(SECTION.finditer(text))
    end = text.index("\n## How the answers are tested")
    return {m.group(1): text[m.end():(heads[i + 1].start() if i + 1 < len(heads) else end)]
            for i, m in enumerate(heads)}


def exercises():
    """``{id: (file name, the exercise with its answer)}``."""
    out = {}
    for name, body in sections().items():
        marks = list(EXERCISE.finditer(body))
        for i, m in enumerate(marks):
            out[m.group(1)] = (name, body[m.start():(marks[i + 1].start() if i + 1 < len(marks) else len(body))])
    return out


def answer(ex_id):
    """The printed values of a numeric answer, as strings."""
    _, text = exercises()[ex_id]
    block = ANSWER.search(text)
    assert block, f"Exercise {ex_id} has no folded answer"
    numbers = NUMBERS.findall(block.group(1))
    assert len(numbers) == 1, f"Exercise {ex_id}: expected one 'Answer: `...`' line, found {len(numbers)}"
    return [t.strip() for t in numbers[0].split(",")]


def agrees(printed, value, rtol):
    """``value`` (float or Fraction) equals the printed token at its printed precision."""
    if re.fullmatch(r"-?\d+(/\d+)?", printed):
        exact = Fr(printed)
        if isinstance(value, Fr):
            return value == exact
        return abs(value - float(exact)) <= rtol * max(abs(float(exact)), 1.0)
    assert re.fullmatch(r"-?\d+\.\d+(e-?\d+)?|-?\d+e-?\d+", printed), f"cannot read {printed!r}"
    d = Decimal(printed)
    half_unit = float(Decimal(1).scaleb(d.as_tuple().exponent)) / 2
    return abs(float(value) - float(d)) <= half_unit + 1e-12 * abs(float(d))


# --- the numeric answers: (refmaml's values, the closed form's values[, rtol]) ----------------------

def ex_L1():
    one, y = a([1.0]), np.array([1])
    lib = [logistic.hessian(a(0.0), one, y)[0, 0], logistic.hessian(a(math.log(3)), one, y)[0, 0]]
    p = Fr(3, 4)                                            # sigma(log 3), (L3)
    return lib, [Fr(1, 2) * Fr(1, 2), p * (1 - p)]          # (L10)


def ex_L2():
    X, y, th = a([1.0], [2.0]), np.array([1, 0]), a(0.0)
    g, H = logistic.grad(th, X, y), logistic.hessian(th, X, y)
    lib = [logistic.loss(th, X, y), g[0], H[0, 0], (th - np.linalg.solve(H, g))[0]]
    g_cf = Fr(1, 2) * ((Fr(1, 2) - 1) * 1 + (Fr(1, 2) - 0) * 2)          # (L4)
    H_cf = Fr(1, 2) * (Fr(1, 4) * 1 + Fr(1, 4) * 4)                      # (L10)
    return lib, [math.log(2), g_cf, H_cf, -g_cf / H_cf]


def ex_L3():
    one, y, th = a([1.0]), np.array([1]), a(40.0)
    lib = [logistic.loss(th, one, y), logistic.grad(th, one, y)[0]]
    # the textbook forms lose every digit, as the answer says
    assert float(special.softplus(np.float64(40.0))) - 40.0 == 0.0
    assert float(special.sigmoid(np.float64(40.0))) - 1.0 == 0.0
    e = math.exp(-40)
    return lib, [math.log1p(e), -e / (1 + e)]                 # (L8), (L9)


def ex_L4():
    X, y, th = a([1.0, 2.0]), np.array([0]), a(0.0, 0.0)
    H = logistic.hessian(th, X, y)
    Hv = logistic.hvp(th, X, y, a(2.0, -1.0))
    assert np.max(np.abs(Hv)) <= 1e-15                        # the null vector, exactly 0 up to rounding
    return list(np.linalg.eigvalsh(H)), [Fr(0), Fr(1, 4) * (1 + 4)]


def ex_S1():
    theta = a([0.0, math.log(2), math.log(3)])
    W = softmax.hessian(theta, a([1.0]), np.array([0]))     # (S9) with x = 1: W itself
    assert np.max(np.abs(W @ np.ones(3))) <= 1e-15            # (S12): W 1 = 0
    lib = [W[0, 0], W[1, 1], W[2, 2], W[0, 1], W[0, 2], W[1, 2], *np.linalg.eigvalsh(W)]
    p = [Fr(1, 6), Fr(1, 3), Fr(1, 2)]
    r13 = math.sqrt(13)
    cf = [p[0] * (1 - p[0]), p[1] * (1 - p[1]), p[2] * (1 - p[2]), -p[0] * p[1], -p[0] * p[2], -p[1] * p[2],
          Fr(0), (11 - r13) / 36, (11 + r13) / 36]
    return lib, cf


def ex_S3():
    one, y = a([1.0]), np.array([1])
    F, G = refmaml.meta_value_and_grad(a([0.0, 0.0]), one, y, one, y, inner_lr=0.25, inner_steps=1,
                                       model="softmax")
    F_bin, G_bin = refmaml.meta_value_and_grad(a(0.0), one, y, one, y, inner_lr=0.5, inner_steps=1)
    assert abs(float(F) - float(F_bin)) <= 1e-15 and np.allclose(G[:, 1], G_bin, rtol=1e-14, atol=0)   # (S14)
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    G_cf = -Fr(7, 8) * sig(-0.25)                                           # (M5) for the binary model
    return [F, G[0, 0], G[0, 1]], [math.log1p(math.exp(-0.25)), -float(G_cf), float(G_cf)]


def ex_S4():
    theta, one, y = a([40.0, 0.0, 0.0]), a([1.0]), np.array([0])
    g = softmax.grad(theta, one, y)                           # x = 1: the residual row P - Y
    lib = [softmax.loss(theta, one, y), g[0, 0], softmax.predict(theta, one)[0, 1]]
    e = math.exp(-40)
    rho = 2 * e                                               # (S5)
    return lib, [math.log1p(rho), -rho / (1 + rho), e / (1 + rho)]


def ex_H1():
    net = MLP((1, 2), "tanh", "mse")                          # one linear layer, 1 -> 2, no activation
    theta, X, y = a(1.0, 3.0, 0.0, 0.0), a([1.0]), a([0.0, 1.0])
    g, H = net.grad(theta, X, y), net.hessian(theta, X, y)
    assert np.array_equal(g[:2], g[2:])                       # weight gradient r x^T with x = 1 equals r
    lib = [net.loss(theta, X, y), g[2], g[3], H[2, 2], H[2, 3]]
    z, t, q = [Fr(1), Fr(3)], [Fr(0), Fr(1)], 2
    return lib, [sum((zi - ti) ** 2 for zi, ti in zip(z, t)) / q, Fr(2, q) * (z[0] - t[0]),
                 Fr(2, q) * (z[1] - t[1]), Fr(2, q), Fr(0)]                     # (H6)


def ex_H2():
    H = softmax.hessian(np.zeros((2, 2)), a([1.0, 2.0]), np.array([0]))
    W = softmax.hessian(np.zeros((1, 2)), a([1.0]), np.array([0]))          # W itself (x = 1)
    x = np.array([1.0, 2.0])
    lib = [H[0, 1], H[1, 2], np.trace(H), np.kron(W, np.outer(x, x))[0, 1]]
    Wf = [[Fr(1, 4), -Fr(1, 4)], [-Fr(1, 4), Fr(1, 4)]]
    xf = [Fr(1), Fr(2)]
    kron = lambda A, B, i, j: A[i // 2][j // 2] * B[i % 2][j % 2]  # noqa: E731
    xx = [[xf[0] * xf[0], xf[0] * xf[1]], [xf[1] * xf[0], xf[1] * xf[1]]]
    return lib, [kron(xx, Wf, 0, 1), kron(xx, Wf, 1, 2), (xx[0][0] + xx[1][1]) * (Wf[0][0] + Wf[1][1]),
                 kron(Wf, xx, 0, 1)]                                          # (H7) and column-major


def ex_H3():
    net = Sequential([layers.Linear(1, 1), layers.Linear(1, 1)], loss="mse", input_shape=(1,))
    theta, X, y = a(1.0, 0.0, 1.0, 0.0), a([1.0]), a(0.0)
    v = a(1.0, 0.0, -1.0, 0.0)
    H = net.hessian(theta, X, y)
    _, hvp = net.grad_hvp(theta[None], X[None], y[None], 0.0)
    gauss_newton = float(v @ hvp(v[None], second_order=False)[0])           # (H12)
    J, r, W = np.ones(4), 2.0, 2.0
    d2z = np.zeros((4, 4))
    d2z[0, 2] = d2z[2, 0] = d2z[1, 2] = d2z[2, 1] = 1.0
    H_cf = W * np.outer(J, J) + r * d2z                                      # (H3)
    return [H[0, 2], gauss_newton, v @ H @ v], [H_cf[0, 2], W * (J @ v) ** 2, v @ H_cf @ v]


def _linear_task(alpha, K, x_s, y_s, x_q, y_q):
    """Closed forms of one 1-D linear-regression task, in fractions: M, c, Q, b_q (Q4)-(Q6)."""
    H_s, b_s = 2 * x_s * x_s, 2 * x_s * y_s
    M, c = Fr(1), Fr(0)
    for _ in range(K):
        M, c = (1 - alpha * H_s) * M, (1 - alpha * H_s) * c + alpha * b_s
    return M, c, 2 * x_q * x_q, 2 * x_q * y_q


def ex_Q1():
    Xs, ys, Xq, yq = a([1.0]), a(1.0), a([2.0]), a(2.0)
    M, c = linear.affine_map(Xs, ys, inner_lr=0.25, inner_steps=1)
    F, g = refmaml.meta_value_and_grad(a(0.0), Xs, ys, Xq, yq, inner_lr=0.25, inner_steps=1, model="linear")
    F2, g2 = linear.closed_form_meta_value_and_grad(a(0.0), Xs, ys, Xq, yq, inner_lr=0.25, inner_steps=1)
    assert abs(float(F) - float(F2)) <= 1e-14 and abs(g[0] - g2[0]) <= 1e-14   # two forms, a few ulps
    star = linear.meta_optimum(Xs, ys, Xq, yq, inner_lr=0.25, inner_steps=1)
    Mf, cf, Q, bq = _linear_task(Fr(1, 4), 1, Fr(1), Fr(1), Fr(2), Fr(2))
    theta_K = cf                                                 # theta = 0
    F_cf = (2 * theta_K - 2) ** 2
    g_cf = Mf * (Q * theta_K - bq)                                # (Q7)
    star_cf = Mf * (bq - Q * cf) / (Mf * Q * Mf)                  # (Q8)
    return [M[0, 0], c[0], F, g[0], star[0]], [Mf, cf, F_cf, g_cf, star_cf]


def ex_Q2():
    Xs, ys, Xq, yq = a([1.0]), a(1.0), a([2.0]), a(3.0)
    with pytest.raises(ValueError, match="no unique minimiser"):
        linear.meta_optimum(Xs, ys, Xq, yq, inner_lr=0.5, inner_steps=1)
    linear.meta_optimum(Xs, ys, Xq, yq, inner_lr=0.25, inner_steps=1)   # another rate: unique
    values = [refmaml.meta_value_and_grad(a(t), Xs, ys, Xq, yq, inner_lr=0.5, inner_steps=1, model="linear")
              for t in (-1.0, 0.0, 2.5)]
    assert all(abs(float(F) - float(values[0][0])) <= 1e-15 and abs(g[0]) <= 1e-15 for F, g in values)
    alpha = Fr(1, 2 * 1 * 1)                                  # 1 - alpha H_s = 0, H_s = 2 x_s^2
    _, c, _, _ = _linear_task(alpha, 1, Fr(1), Fr(1), Fr(2), Fr(3))
    return [0.5, values[0][0]], [alpha, (2 * c - 3) ** 2]


def ex_Q3():
    Xs, ys = np.array([[[1.0]], [[2.0]]]), a([2.0], [0.0])
    lib = [linear.meta_optimum(Xs, ys, Xs, ys, inner_lr=1 / 16, inner_steps=K)[0] for K in (1, 0)]
    cf = []
    for K in (1, 0):
        S = bbar = Fr(0)
        for x, y in ((Fr(1), Fr(2)), (Fr(2), Fr(0))):
            M, c, Q, bq = _linear_task(Fr(1, 16), K, x, y, x, y)
            S, bbar = S + M * Q * M, bbar + M * (bq - Q * c)      # (Q8)
        cf.append(bbar / S)
    return lib, cf


def ex_M1():
    one, y, alpha = a([1.0]), np.array([1]), 2 * math.log(3)
    kw = dict(inner_lr=alpha, inner_steps=1)
    theta_1 = refmaml.adapt(a(0.0), one, y, **kw)
    F, g = refmaml.meta_value_and_grad(a(0.0), one, y, one, y, **kw)
    _, g_fo = refmaml.meta_value_and_grad(a(0.0), one, y, one, y, first_order=True, **kw)
    return [theta_1[0], F, g_fo[0], g[0]], [math.log(3), math.log(4 / 3), Fr(3, 4) - 1,
                                            (1 - alpha / 4) * (-0.25)]


def ex_M2():
    n, m, d, K = 5, 15, 784, 5
    p = problem.meta(models.get("logistic"), np.zeros(d), np.zeros((n, d)), np.zeros(n), np.zeros((m, d)),
                     np.zeros(m), l2=0.0, inner_lr=0.1, inner_steps=K)
    primal, _ = policy.costs(p)
    net = p.model.network
    per_gradient = net.gradient_flops(n, d, (d,))
    evaluations = K * (per_gradient + net.hvp_flops(n, d, (d,))) // per_gradient + 1
    return [primal, evaluations], [8 * K * n * d + 4 * m * d, 2 * K + 1]


def ex_M3():
    theta, Xs, ys, Xq, yq = a(0.0, 1.0), a([1.0, 1.0]), a(0.0), a([1.0, 0.0]), a(0.0)
    kw = dict(inner_lr=0.25, inner_steps=1, model="linear", inner_mask=np.array([True, False]))
    F, g = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, **kw)
    _, g_fo = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, first_order=True, **kw)
    t0, t1 = Fr(0), Fr(1)
    u = (t0 - t1) / 2                                         # theta_{1,0} as a function of theta
    return [F, g[0], g[1], g_fo[0], g_fo[1]], [u * u, u, -u, 2 * u, Fr(0)]


def ex_G1():
    Xs, ys = a([1.0, 0.0, 1.0], [0.0, 1.0, 1.0]), a(1.0, 0.0)
    theta_2 = refmaml.adapt(np.zeros(3), Xs, ys, inner_lr=0.5, inner_steps=2, model="linear")
    p = problem.meta(models.get("linear"), np.zeros(3), Xs, ys, Xs, ys, l2=0.0, inner_lr=0.5, inner_steps=2)
    record = {}
    dual.value_and_grad(p, record=record)
    Gamma_2 = record["forward"][2][0][0, :, 0]
    assert np.allclose(Xs.T @ Gamma_2, theta_2, rtol=0, atol=1e-15)       # back to d dimensions
    lib = [*Gamma_2, *(Xs @ theta_2), *theta_2]
    G = [[Fr(2), Fr(1)], [Fr(1), Fr(2)]]
    y = [Fr(1), Fr(0)]
    Gamma, alpha, n = [Fr(0), Fr(0)], Fr(1, 2), 2
    for _ in range(2):                                                    # (G2), (G3), c_k = 1
        Z = [G[i][0] * Gamma[0] + G[i][1] * Gamma[1] for i in range(2)]
        r = [2 * (Z[i] - y[i]) for i in range(2)]
        Gamma = [Gamma[i] - alpha / n * r[i] for i in range(2)]
    Z = [G[i][0] * Gamma[0] + G[i][1] * Gamma[1] for i in range(2)]
    rows = [[1, 0, 1], [0, 1, 1]]
    theta = [sum(rows[i][j] * Gamma[i] for i in range(2)) for j in range(3)]
    return lib, [*Gamma, *Z, *theta]


def ex_G2():
    theta_3 = refmaml.adapt(a(0.0, 1.0), a([1.0, 0.0]), np.array([1]), inner_lr=0.5, inner_steps=3, l2=0.5)
    return [theta_3[1]], [(1 - Fr(1, 2) * Fr(1, 2)) ** 3]


def _costs(K, n=5, m=5, d=784):
    p = problem.meta(models.get("logistic"), np.zeros(d), np.zeros((n, d)), np.zeros(n), np.zeros((m, d)),
                     np.zeros(m), l2=0.0, inner_lr=0.1, inner_steps=K)
    return policy.costs(p)


def ex_G3():
    n = m = 5
    d, K, C = 784, 5, 1
    primal, dual_count = _costs(K)
    first = next(k for k in range(1, 20) if _costs(k)[1] < _costs(k)[0])
    assert _costs(first - 1) == (109760, 110160) and _costs(first) == (141120, 110260)   # quoted in the answer
    primal_cf = 8 * K * n * d * C + 4 * m * d * C
    dual_cf = 2 * n * n * d + 2 * m * n * d + 4 * (n + m) * d * C + 4 * K * n * n * C + 4 * m * n * C
    rule = math.floor(Fr(n + m, 4 * C) + Fr(1, 2)) + 1                # the first K above the bound
    return [primal, dual_count, first], [primal_cf, dual_cf, rule]


def ex_V1():
    kw = dict(inner_lr=1 / 8, inner_steps=2, model="linear")
    one, zero = a([1.0]), a(0.0)
    reptile = refmaml.reptile_direction(a(1.0), one, zero, **kw)
    _, g_fo = refmaml.meta_value_and_grad(a(1.0), one, zero, one, zero, first_order=True, **kw)
    _, g = refmaml.meta_value_and_grad(a(1.0), one, zero, one, zero, **kw)
    alpha, h, theta = Fr(1, 8), Fr(2), Fr(1)
    t1 = (1 - alpha * h) * theta
    t2 = (1 - alpha * h) * t1
    return [reptile[0], g_fo[0], g[0]], [theta - t2, h * t2, (1 - alpha * h) ** 2 * h * t2]


def ex_V2():
    theta, Xs, ys, Xq, yq = a(0.0, 0.0), a([1.0, 1.0], [0.0, 1.0]), a(0.0, 0.0), a([1.0, 0.0]), a(-0.5)
    rates = a(0.5, 0.25)
    _, g, g_rate = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=rates, inner_steps=1,
                                               model="linear", lr_grad=True)
    assert np.array_equal(g_rate, np.zeros(2))                 # (V3): the support gradient is 0
    g_1 = linear.grad(theta, Xq, yq)                          # theta_1 = theta
    wrong = g_1 - rates * linear.hvp(theta, Xs, ys, g_1)
    H = [[Fr(1), Fr(1)], [Fr(1), Fr(2)]]                      # (2/n) Xs^T Xs
    r = [Fr(1, 2), Fr(1, 4)]
    g1 = [Fr(1), Fr(0)]
    right = [g1[i] - sum(H[i][j] * r[j] * g1[j] for j in range(2)) for i in range(2)]       # (V2)
    wrong_cf = [g1[i] - r[i] * sum(H[i][j] * g1[j] for j in range(2)) for i in range(2)]
    return [*g, *wrong], [*right, *wrong_cf]


def ex_V3():
    F, g, info = refmaml.imaml_value_and_grad(a(0.0), a([1.0]), a(1.0), a([1.0]), a(2.0), lam=2.0, model="linear")
    gamma, theta, H_s = Fr(2), Fr(0), Fr(2)
    phi = (2 + gamma * theta) / (2 + gamma)                   # (V10): 2 (phi - 1) + gamma (phi - theta) = 0
    grad_q = 2 * (phi - 2)
    return [info["phi"][0], F, g[0]], [phi, (phi - 2) ** 2, grad_q / (1 + H_s / gamma)], 1e-10   # (V11), (V14)


def ex_V4():
    A = np.diag([1.0, 3.0])
    b = a([1.0, 1.0])
    apply = lambda v: v @ A  # noqa: E731
    x1, _, _ = conjugate_gradient(np, apply, b, 1e-14, 1)
    x2, residual, iterations = conjugate_gradient(np, apply, b, 1e-14, 10)
    assert iterations == 2 and residual[0] <= 1e-14      # (V13) ends in two steps, to rounding
    a0 = x1[0, 0] / b[0, 0]                                   # v_1 = a_0 u_0, u_0 = b
    r1 = b[0] - A @ x1[0]
    u1 = r1 + (r1 @ r1) / (b[0] @ b[0]) * b[0]
    a1 = (x2[0, 0] - x1[0, 0]) / u1[0]                        # v_2 = v_1 + a_1 u_1
    return [a0, a1, *x2[0]], [Fr(2, 4), Fr(1, 2) / Fr(3, 4), Fr(1), Fr(1, 3)]


def ex_D1():
    f = lambda x: np.sum(x ** 3)  # noqa: E731
    central = check.central_difference_gradient(f, a(1.0), step=0.1)[0]
    cstep = check.complex_step_gradient(f, a(1.0), step=0.1)[0]
    h = 0.1
    return [central, cstep], [3 + h * h, 3 - h * h]           # (D1), (D2) with f''' = 6, no h^4 terms


def ex_D2():
    # The printed values are the error model; the measured errors of refmaml's central differences
    # must follow it: at h = 1e-10 below the rounding estimate eps/h (times 2: each evaluation of
    # exp may be off by an ulp), and far above the errors at the best step; at the best step below
    # 4 eps^(2/3) (the step is h max(1, |x|), up to 1.5 h here, which scales the truncation part by
    # up to 2.25, and the rounding part may reach 2 eps/h). Medians over 41 points so that a lucky
    # cancellation at one point decides nothing.
    xs = np.linspace(0.5, 1.5, 41)

    def errors(h):
        return np.array([abs(check.central_difference_gradient(lambda x: np.sum(np.exp(x)), a(x0), step=h)[0]
                             - math.exp(x0)) / math.exp(x0) for x0 in xs])

    small, best = errors(1e-10), errors(EPS ** (1 / 3))
    assert np.max(small) <= 2 * EPS / 1e-10
    assert np.median(small) >= 100 * np.median(best)
    assert np.max(best) <= 4 * EPS ** (2 / 3)
    return [EPS / 1e-10, EPS ** (1 / 3), EPS ** (2 / 3)], [2.0 ** -52 / 1e-10, 2.0 ** (-52 / 3), 2.0 ** (-104 / 3)]


def ex_D3():
    modulus = check.complex_step_gradient(lambda x: np.sum(x * np.abs(x)), a(1.0))[0]
    branch = check.complex_step_gradient(lambda x: np.sum(x * x * np.sign(x.real)), a(1.0))[0]
    h = check.COMPLEX_STEP
    return [modulus, branch], [math.sqrt(1 + h * h), 2 * abs(1.0)]


def ex_R1():
    top = [np.linalg.eigvalsh(softmax.hessian(np.zeros((1, C)), a([1.0]), np.array([0])))[-1] for C in (2, 3)]
    rng = np.random.default_rng(7)
    for _ in range(20):                                        # Gershgorin: never above 1/2
        C = int(rng.integers(2, 6))
        W = softmax.hessian(rng.normal(size=(1, C)) * 2, a([1.0]), np.array([0]))
        assert np.linalg.eigvalsh(W)[-1] <= 0.5 + 1e-15
    return top, [2 * Fr(1, 2) * (1 - Fr(1, 2)), Fr(1, 3)]


def ex_R2():
    Xs, ys = np.eye(2), a(0.0, 0.0)
    kw = dict(inner_lr=7.0, model="linear")
    chi = abs(refmaml.adapt(a(1.0, 0.0), Xs, ys, inner_steps=1, **kw)[0])
    theta = refmaml.adapt(a(1.0, 0.0), Xs, ys, inner_steps=396, **kw)
    assert abs(theta[0] / 6.0 ** 396 - 1) <= 1e-12 and theta[1] == 0.0      # (-6)^396, K eps of rounding
    with pytest.raises(ValueError, match="overflowed"):
        refmaml.adapt(a(1.0, 0.0), Xs, ys, inner_steps=397, **kw)
    c_l, norm2, n = 2, 1, 2
    h_max = Fr(c_l * norm2, n)                                 # c_l ||X_s||_2^2 / n, attained: H_s = I
    chi_cf = abs(1 - 7 * h_max)                                # (R3)
    log_omega = math.log(np.finfo(np.float64).max)
    return [chi, 396], [chi_cf, math.floor(log_omega / math.log(chi_cf))]


def ex_R3():
    with np.errstate(over="ignore"):
        assert np.isinf(np.log(1 + np.exp(np.float64(800.0))))
    lib = [special.sigmoid(np.float64(-700.0)), special.softplus(np.float64(800.0))]
    e = math.exp(-700)
    return lib, [e / (1 + e), Fr(800)]


def ex_K1():
    K, rho = 4, 2
    exact, fo, rep = (costs.passes(m, K) for m in ("maml", "first-order", "reptile"))
    lib = [exact["forward"], exact["r_forward"], exact["forward"] + rho * exact["r_forward"],
           fo["forward"] + rho * fo["r_forward"], rep["forward"] + rho * rep["r_forward"]]
    return lib, [K + 1, K, 3 * K + 1, K + 1, K]                     # (K2)-(K4), in gradients (K1)


def ex_K2():
    K, s = 16, 4
    counts, stored, held = costs.checkpointed_passes(K, s)
    return [stored, held, counts["forward"], costs.passes("maml", K)["forward"]], \
        [math.ceil(K / s), s, 2 * K + 1, K + 1]                     # (K8), (K2)


def ex_K3():
    K, rho = 8, 2
    counts = costs.recomputed_passes(K)
    return [counts["forward"], counts["forward"] + rho * counts["r_forward"]], \
        [K + sum(k + 1 for k in range(K)) + 1, K + K * (K + 1) // 2 + 1 + rho * K]   # (K9)


NUMERIC = {
    "L.1": ex_L1, "L.2": ex_L2, "L.3": ex_L3, "L.4": ex_L4,
    "S.1": ex_S1, "S.3": ex_S3, "S.4": ex_S4,
    "H.1": ex_H1, "H.2": ex_H2, "H.3": ex_H3,
    "Q.1": ex_Q1, "Q.2": ex_Q2, "Q.3": ex_Q3,
    "M.1": ex_M1, "M.2": ex_M2, "M.3": ex_M3,
    "G.1": ex_G1, "G.2": ex_G2, "G.3": ex_G3,
    "V.1": ex_V1, "V.2": ex_V2, "V.3": ex_V3, "V.4": ex_V4,
    "D.1": ex_D1, "D.2": ex_D2, "D.3": ex_D3,
    "R.1": ex_R1, "R.2": ex_R2, "R.3": ex_R3,
    "K.1": ex_K1, "K.2": ex_K2, "K.3": ex_K3,
}
DERIVATIONS = {"S.2", "Q.4", "M.4", "G.4", "D.4"}


@pytest.mark.parametrize("ex_id", sorted(NUMERIC))
def test_numeric_answer(ex_id):
    out = NUMERIC[ex_id]()
    lib, cf = out[0], out[1]
    rtol = out[2] if len(out) > 2 else EXACT_RTOL
    printed = answer(ex_id)
    assert len(lib) == len(cf) == len(printed), f"Exercise {ex_id}: {len(printed)} printed values"
    for k, (token, x, y) in enumerate(zip(printed, lib, cf, strict=True)):
        assert agrees(token, float(x), rtol), f"Exercise {ex_id}, value {k + 1}: printed {token}, refmaml {x!r}"
        assert agrees(token, y if isinstance(y, Fr) else float(y), rtol), \
            f"Exercise {ex_id}, value {k + 1}: printed {token}, closed form {y!r}"


# --- the derivation exercises: the identity each proves, on a random instance -----------------------

def test_derivation_S2_meta_gradient_rows_sum_to_zero():
    """(S12), (S13): class shifts are the null space; rows of the meta-gradient sum to zero for any
    ridge with a scalar rate, and with class rates only when lambda = 0. Tolerance: 1e-13 of the
    sum of the terms' magnitudes, a cancellation measured as checks.md advises after (D4)."""
    rng = np.random.default_rng(2)
    d, C, n, m = 3, 3, 4, 5
    theta = rng.normal(size=(d, C))
    Xs, Xq = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    ys, yq = rng.integers(0, C, n), rng.integers(0, C, m)
    u = rng.normal(size=d)
    shift = np.outer(u, np.ones(C))
    Hu = softmax.hvp(theta, Xs, ys, shift)
    assert np.max(np.abs(Hu)) <= 1e-13 * np.max(np.abs(shift))              # (S12), lambda = 0

    def row_sums(rate, l2):
        _, g = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, inner_lr=rate, inner_steps=3, model="softmax",
                                           l2=l2)
        return np.max(np.abs(g.sum(axis=1))) / np.sum(np.abs(g))

    class_rates = np.array([0.2, 0.5, 0.9])
    assert row_sums(0.5, 0.2) <= 1e-13                        # (S13) with the ridge term
    assert row_sums(class_rates, 0.0) <= 1e-13                # class rates, lambda = 0
    assert row_sums(class_rates, 0.2) >= 1e-4                 # class rates with lambda > 0 break it


def test_derivation_Q4_reverse_pass_is_the_transposed_affine_map():
    """(Q5), (Q7), (V2): with rates of shape (K, d) the reverse pass gives M^T grad L_q(theta_K),
    M^T = (I - H_s A_0) ... (I - H_s A_{K-1}). Tolerance 1e-12 relative, as linear.md states."""
    rng = np.random.default_rng(3)
    d, n, m, K = 3, 4, 3, 3
    theta, Xs, Xq = rng.normal(size=d), rng.normal(size=(n, d)), rng.normal(size=(m, d))
    ys, yq = rng.normal(size=n), rng.normal(size=m)
    rates = rng.uniform(0.05, 0.3, size=(K, d))
    kw = dict(inner_lr=rates, inner_steps=K)
    _, g = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, model="linear", **kw)
    _, g_closed = linear.closed_form_meta_value_and_grad(theta, Xs, ys, Xq, yq, **kw)
    H = linear.hessian(theta, Xs, ys)
    M, c = linear.affine_map(Xs, ys, **kw)
    product = np.eye(d)
    for k in range(K):
        product = product @ (np.eye(d) - H @ np.diag(rates[k]))
    assert np.allclose(product, M.T, rtol=0, atol=1e-14)
    g_product = product @ linear.grad(M @ theta + c, Xq, yq)
    for other in (g_closed, g_product):
        assert check.relative_error(g, other) <= 1e-12


def test_derivation_M4_first_order_differs_by_one_hvp():
    """(M5), (M8): for K = 1, grad F - grad F_FO = -alpha H_s(theta) grad L_q(theta_1), and the
    difference is O(alpha): halving alpha about halves it. Tolerance 1e-12 relative."""
    rng = np.random.default_rng(4)
    d, n, m = 4, 5, 6
    theta, Xs, Xq = rng.normal(size=d), rng.normal(size=(n, d)), rng.normal(size=(m, d))
    ys, yq = rng.integers(0, 2, n), rng.integers(0, 2, m)

    def difference(alpha):
        kw = dict(inner_lr=alpha, inner_steps=1)
        _, g = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, **kw)
        _, g_fo = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, first_order=True, **kw)
        theta_1 = refmaml.adapt(theta, Xs, ys, **kw)
        predicted = -alpha * logistic.hvp(theta, Xs, ys, logistic.grad(theta_1, Xq, yq))
        assert check.relative_error(g - g_fo, predicted) <= 1e-12
        return np.linalg.norm(g - g_fo)

    ratio = difference(0.02) / difference(0.01)
    assert 1.9 <= ratio <= 2.1                                # O(alpha): the leading term is linear


def test_derivation_G4_inner_products_and_first_order_in_the_dual_form():
    """(G3), (G6), (G7): <X_s^T U, X_s^T W> = <U, G W>, and first-order MAML is X_q^T B in the dual
    form. Tolerance 1e-12 relative."""
    rng = np.random.default_rng(5)
    d, n, m, C = 6, 3, 4, 2
    Xs, Xq = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    U, W = rng.normal(size=(n, C)), rng.normal(size=(n, C))
    left, right = np.sum((Xs.T @ U) * (Xs.T @ W)), np.sum(U * ((Xs @ Xs.T) @ W))
    assert abs(left - right) <= 1e-12 * np.sum(np.abs(Xs.T @ U) * np.abs(Xs.T @ W))
    theta, ys, yq = rng.normal(size=d), rng.integers(0, 2, n), rng.integers(0, 2, m)
    kw = dict(inner_lr=0.3, inner_steps=4)
    _, g_fo = refmaml.meta_value_and_grad(theta, Xs, ys, Xq, yq, first_order=True, form="dual", **kw)
    theta_K = refmaml.adapt(theta, Xs, ys, **kw)
    B = (special.sigmoid(Xq @ theta_K) - yq) / m              # query residuals (L9) over m
    assert check.relative_error(g_fo, Xq.T @ B) <= 1e-12


def test_derivation_D4_difference_formulas_are_exact_on_a_quadratic():
    """(D3): on f = x^T A x / 2 both formulas give A v for any step, here h = 0.5; tolerance 1e-14
    relative (D4), rounding only."""
    rng = np.random.default_rng(6)
    B = rng.normal(size=(4, 4))
    A = B + B.T
    x, v = rng.normal(size=4), rng.normal(size=4)
    grad_f = lambda z: A @ z  # noqa: E731
    for method in ("complex", "central"):
        Hv = check.hvp_reference(grad_f, x, v, method=method, step=0.5)
        assert check.relative_error(Hv, A @ v) <= 1e-14, method


def test_derivation_V1_reptile_expansion_is_exact_on_a_quadratic_for_two_steps():
    """(V7) with K = 2 on a quadratic: (theta - theta_2) / (2 alpha) = g - alpha H g / 2 exactly
    (no O(alpha^2) remainder); linear regression with the query set equal to the support set.
    Tolerance 1e-12 relative."""
    rng = np.random.default_rng(8)
    d, n, alpha = 3, 5, 0.1
    theta, Xs, ys = rng.normal(size=d), rng.normal(size=(n, d)), rng.normal(size=n)
    direction = refmaml.reptile_direction(theta, Xs, ys, inner_lr=alpha, inner_steps=2, model="linear")
    g = linear.grad(theta, Xs, ys)
    expansion = g - alpha / 2 * linear.hvp(theta, Xs, ys, g)
    assert check.relative_error(direction / (2 * alpha), expansion) <= 1e-12


# --- the file itself ---------------------------------------------------------------------------

def test_every_exercise_has_a_test_and_the_right_kind_of_answer():
    found = exercises()
    assert set(found) == set(NUMERIC) | DERIVATIONS, sorted(set(found) ^ (set(NUMERIC) | DERIVATIONS))
    for ex_id, (name, text) in found.items():
        assert ex_id[0] == PREFIX[name], f"Exercise {ex_id} sits in the section of {name}"
        block = ANSWER.search(text)
        assert block, f"Exercise {ex_id} has no folded answer"
        numeric, derivation = NUMBERS.search(block.group(1)), DERIVATION.search(block.group(1))
        assert bool(numeric) == (ex_id in NUMERIC) and bool(derivation) == (ex_id in DERIVATIONS), ex_id


def test_every_covered_file_has_three_to_five_exercises():
    counts = {name: len(EXERCISE.findall(body)) for name, body in sections().items()}
    assert list(counts) == FILES
    assert all(3 <= k <= 5 for k in counts.values()), counts


def test_exercises_use_inline_math_and_cite_existing_labels():
    text = PATH.read_text(encoding="utf-8")
    assert "$$" not in text and "\\tag" not in text
    root = PATH.parent
    labels = set()
    for path in root.glob("*.md"):
        labels |= {f"{p}{k}" for p, k in re.findall(r"\\tag\{([A-Z]+)(\d+)\}", path.read_text(encoding="utf-8"))}
    for ex_id, (_, body) in exercises().items():
        head = body.split("\n", 1)[0]
        cites = re.findall(r"\(([A-Z]{1,2}\d+)\)", head)
        assert cites, f"Exercise {ex_id} cites no equation"
        assert set(cites) <= labels, f"Exercise {ex_id} cites {sorted(set(cites) - labels)}"
