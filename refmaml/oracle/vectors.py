"""Test vectors: writing them (JSON and a ``.npz`` mirror) and reading them, or results, back.

Files are untrusted: JSON only (``.npz`` read with ``allow_pickle=False``), every field checked
for type, shape, range and finiteness before use. Floats are written with Python's shortest
round-trip representation, so every float64 survives the JSON exactly. The schema is
``vectors.schema.json`` (results: ``results.schema.json``) beside this module, and the README's
section "Test vectors".
"""

import io
import json
import math
import pathlib
import zipfile

import numpy as np

from .. import __version__, _atomic, models
from . import answers, cases as _cases

HERE = pathlib.Path(__file__).resolve().parent
SCHEMAS = ("vectors.schema.json", "results.schema.json")
STEM = f"refmaml-vectors-v{_cases.VERSION}"


def stem(version=_cases.VERSION):
    """The file name, without suffix, of the vectors of ``version``."""
    return f"refmaml-vectors-v{version}"

CONVENTIONS = {
    "meta_loss": "mean over tasks of the query loss after inner_steps gradient steps on the support loss",
    "loss": "mean over examples of the cross-entropy (binary for logistic, softmax for softmax), plus "
            "(l2/2)||theta||^2 on the support loss only",
    "linear": "linear regression (version 2): mean over examples of the squared error (X theta - y)^2, no 1/2, "
              "plus (l2/2)||theta||^2 on the support loss only; real targets",
    "inner_step": "theta_{k+1} = theta_k - inner_lr * grad L_s(theta_k), inner_lr a scalar or one rate per "
                  "parameter at every step",
    "shapes": "theta (d,) logistic or (d, C) softmax; Xs (T, n, d); ys (T, n); Xq (T, m, d); yq (T, m); "
              "trajectory (K+1, T) + theta.shape; inner_lr_grad has inner_lr's shape",
    "labels": "logistic: 0.0 or 1.0; softmax: integers in [0, C); linear: real numbers",
    "networks": "model mlp (version 2): sizes, activation (tanh or relu, after every layer but the last) and "
                "loss (mse, logistic or softmax) recorded with the case; theta flat in the order of PyTorch's "
                "parameters_to_vector(nn.Sequential(Linear, act, ..., Linear).parameters()): per layer the "
                "weight (out, in) row-major, then the bias; l2 covers every parameter; mse targets (T, n) when "
                "d_out = 1, else (T, n, d_out)",
    "first_order": "first-order MAML: grad L_q(theta_K), and the rate gradient with the inner gradients "
                   "held constant (derivations/variants.md (V5))",
    "images": "image networks (version 3): model convnet (classes, blocks, channels, input_shape, loss: blocks of "
              "Conv2d(3x3, padding 1), BatchNorm2d, ReLU, MaxPool2d(2), then Flatten and Linear) or sequential "
              "(layers, each {layer: kind, arguments}, loss, input_shape); Xs (T, n, C, H, W) and Xq (T, m, C, H, W) "
              "in NCHW; theta flat in PyTorch's parameters_to_vector order (convolution kernels (out, in, kh, kw) "
              "row-major, then the bias; batch norm's weight gamma, then its bias beta); batch norm with the "
              "statistics of the set being evaluated (track_running_stats=False: the support set at every inner "
              "step, the query set for the query loss); max-pooling's first maximum wins a tie; every ReLU input "
              "and max-pool window at least 1e-6 from its kink at every inner iterate",
    "inner_mask": "cases of meta-only parameters (version 3, ids ending in mask and 8 hex digits): inputs.inner_mask, "
                  "a boolean list of theta's length, true where the inner loop adapts (ANIL: the last layer's "
                  "parameters, model.mask(-1)); theta_{k+1} = theta_k - inner_lr * inner_mask * grad L_s(theta_k), "
                  "the other parameters move only in the outer loop; a results file answers them with options "
                  "inner_mask true",
    "alone": "cases tagged alone (version 3, id ending in -alone): one task and one inner step with one "
             "condition (l2 > 0, learned rates, one example per set, saturated logits), so that a failure there "
             "is read as that condition's",
}


def _tolist(a):
    return a.tolist() if isinstance(a, np.ndarray) else a


VERSION_2_CONVENTIONS = ("linear", "networks")  # the entries version 1 lacks
VERSION_3_CONVENTIONS = ("images", "inner_mask", "alone")  # the entries versions 1 and 2 lack
OPTION_MODELS = _cases.MODELS[:2] + ("both",) + _cases.MODELS[2:]  # what options.model may name, networks aside


def case_record(case):
    """The JSON record of one case: its id, its model's spec (``model.spec()``), its inputs (with
    ``inner_mask``, a boolean list, for a case of meta-only parameters) and every answer (float64,
    exact)."""
    rate = case.inner_lr
    right, first = answers.truth(case, rate), answers.first_order(case, rate)
    mask = {} if case.mask is None else {"inner_mask": [bool(b) for b in np.asarray(case.mask).ravel()]}
    return {
        "id": case.id, **models.get(case.model).spec(),
        "diagnostic": case.diagnostic, "note": case.note,
        "inputs": {"theta": case.theta.tolist(), "Xs": case.Xs.tolist(), "ys": case.ys.tolist(),
                   "Xq": case.Xq.tolist(), "yq": case.yq.tolist(), "inner_lr": _tolist(rate),
                   "inner_steps": case.inner_steps, "l2": case.l2, **mask},
        "outputs": {"trajectory": answers.trajectory(case, rate).tolist(), "meta_loss": right.loss,
                    "meta_grad": right.grad.tolist(), "first_order_meta_grad": first.grad.tolist(),
                    "inner_lr_grad": _tolist(right.lr_grad[()] if right.lr_grad.ndim == 0 else right.lr_grad),
                    "first_order_inner_lr_grad": _tolist(first.lr_grad[()] if first.lr_grad.ndim == 0
                                                         else first.lr_grad)},
    }


def document(version=_cases.VERSION):
    """The whole vectors document (a dict), deterministic for a given refmaml version and platform."""
    dropped = (VERSION_2_CONVENTIONS if version == "1" else ()) + (VERSION_3_CONVENTIONS if version != "3" else ())
    conventions = {k: v for k, v in CONVENTIONS.items() if k not in dropped}
    if version == "1":
        conventions = dict(conventions, labels="logistic: 0.0 or 1.0; softmax: integers in [0, C)")
    return {"format": "refmaml-vectors", "version": version, "generator": f"refmaml {__version__}",
            "conventions": conventions, "cases": [case_record(c) for c in _cases.all_cases(version)]}


def _json_bytes(doc):
    # one case per line: diffs stay readable, floats keep their shortest exact repr
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = [json.dumps(head, separators=(",", ":"))[:-1] + ',"cases":[']
    lines += [json.dumps(c, separators=(",", ":")) + ("," if i + 1 < len(doc["cases"]) else "")
              for i, c in enumerate(doc["cases"])]
    return ("\n".join(lines) + "\n]}\n").encode("utf-8")


def _npz_bytes(doc):
    """An ``.npz`` mirror with fixed timestamps, so that it is byte-identical on regeneration."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as z:
        for c in doc["cases"]:
            for part in ("inputs", "outputs"):
                for key, value in c[part].items():
                    classes = models.from_spec(_spec(c)).targets == "classes"
                    array = np.asarray(value, dtype=bool if key == "inner_mask" else np.int64 if key in (
                                       "inner_steps",) or (key in ("ys", "yq") and classes) else np.float64)
                    data = io.BytesIO()
                    np.lib.format.write_array(data, array, allow_pickle=False)
                    info = zipfile.ZipInfo(f"{c['id']}/{part}/{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                    z.writestr(info, data.getvalue())
    return buffer.getvalue()


def write(directory, version=_cases.VERSION):
    """Write the vectors of ``version`` (JSON and ``.npz``) and both schemas into ``directory``;
    returns the paths."""
    if version not in _cases.VERSIONS:
        raise ValueError(f"version must be one of {', '.join(_cases.VERSIONS)}; got {version!r}")
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    doc = document(version)
    name = stem(version)
    paths = [out / f"{name}.json", out / f"{name}.npz"] + [out / s for s in SCHEMAS]
    contents = [_json_bytes(doc), _npz_bytes(doc)] + [(HERE / s).read_bytes() for s in SCHEMAS]
    for path, data in zip(paths, contents, strict=True):
        _atomic.write_bytes(path, data)
    return paths


# --- reading ----------------------------------------------------------------------------------

class InvalidFile(ValueError):
    """A vectors or results file that cannot be used; the message says which field and why."""


class _NonFinite:
    """A NaN or Infinity constant of a JSON file: kept as a marker so that the field (and its case)
    can be named when it is refused."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def _reject_constant(name):
    return _NonFinite(name)


def _fits(integer):
    """Whether a Python integer converts to a float64."""
    try:
        float(integer)
    except OverflowError:
        return False
    return True


def _first_nonfinite(value, where):
    """``(path, what)`` of the first NaN/Infinity marker, infinite float or integer beyond float64's
    range in ``value``, or None."""
    if isinstance(value, _NonFinite) or (isinstance(value, float) and not math.isfinite(value)):
        return where, "is not a finite number (NaN or infinity)"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**1023 and not _fits(value):
        return where, (f"is an integer of about {int(abs(value).bit_length() * 0.30103)} digits, beyond "
                       "float64's range")
    if isinstance(value, dict):
        for k, v in value.items():
            label = f"case {k!r}" if where == "results" else (f"{where}.{k}" if where else str(k))
            found = _first_nonfinite(v, label)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            label = f"{where}[{i}]"
            if isinstance(v, dict) and isinstance(v.get("id"), str):
                label = f"case {v['id']!r}"
            found = _first_nonfinite(v, label)
            if found is not None:
                return found
    return None


def _unique(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise InvalidFile(f"duplicate key in an object: {sorted(k for k in keys if keys.count(k) > 1)[0]!r}")
    return dict(pairs)


MAX_FILE_BYTES = 64 * 2**20  # the vectors file is about 1 MB; anything this large is not ours


_MAGIC = ((b"PK\x03\x04", "a zip archive (an .npz file such as the vectors' .npz mirror?)"),
          (b"PK\x05\x06", "an empty zip archive"), (b"\x93NUMPY", "a NumPy .npy array"),
          (b"\x89PNG", "a PNG image"), (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"))


def _binary_kind(data):
    """What a file that is not UTF-8 text is, from its first bytes."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return "binary data"


def read_json(path):
    """Parse a JSON file strictly: no NaN or Infinity, no duplicate keys, at most
    ``MAX_FILE_BYTES``, no nesting deep enough to exhaust the parser's recursion."""
    try:
        size = pathlib.Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidFile(f"{path} has {size} bytes; files of more than {MAX_FILE_BYTES} are refused")
        data = pathlib.Path(path).read_bytes()
        text = data.decode("utf-8")
    except OSError as exc:
        raise InvalidFile(f"cannot read {path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidFile(f"cannot read {path}: it is {_binary_kind(data)}, not a JSON file (byte {exc.start} "
                          "is not UTF-8 text)") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique)
    except json.JSONDecodeError as exc:
        raise InvalidFile(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidFile(f"{path} nests arrays or objects too deeply to be a refmaml file") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InvalidFile(f"{path} holds a value that cannot be read: {exc}") from None
    try:
        found = _first_nonfinite(doc, "")
    except RecursionError:
        raise InvalidFile(f"{path} nests arrays or objects too deeply to be a refmaml file") from None
    if found is not None:
        where, what = found
        raise InvalidFile(f"{where or 'the file'} {what}; JSON files here hold finite float64 numbers only")
    return doc


def _object(value, where, required, optional=()):
    if not isinstance(value, dict):
        raise InvalidFile(f"{where} must be an object; got {type(value).__name__}")
    missing = [k for k in required if k not in value]
    extra = [k for k in value if k not in required and k not in optional]
    problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
        ([f"unexpected {', '.join(extra)}"] if extra else [])
    if problems:
        raise InvalidFile(f"{where}: " + "; ".join(problems))
    return value


def _number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidFile(f"{where} must be a finite number; got {value!r}")
    return float(value)


def _array(value, where, shape=None, *, integer=False):
    """A nested list of numbers as a float64 (or int64) array of ``shape`` (None entries free)."""
    def leaves(v):
        if isinstance(v, list):
            for x in v:
                yield from leaves(x)
        else:
            yield v
    for x in leaves(value):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise InvalidFile(f"{where} must hold finite numbers only; found {x!r}")
        if integer and not isinstance(x, int):
            raise InvalidFile(f"{where} must hold integers; found {x!r}")
    try:
        a = np.array(value, dtype=np.int64 if integer else np.float64)
    except (ValueError, OverflowError) as exc:
        raise InvalidFile(f"{where} is not a rectangular array of numbers: {exc}") from None
    if a.dtype == object:
        raise InvalidFile(f"{where} is not a rectangular array of numbers")
    if shape is not None and (a.ndim != len(shape) or any(
            s is not None and s != t for s, t in zip(shape, a.shape, strict=True))):
        expected = tuple("*" if s is None else s for s in shape)
        raise InvalidFile(f"{where} has shape {a.shape}; expected {expected}")
    return a


INPUTS = ("theta", "Xs", "ys", "Xq", "yq", "inner_lr", "inner_steps", "l2")
OUTPUTS = ("trajectory", "meta_loss", "meta_grad", "first_order_meta_grad", "inner_lr_grad",
           "first_order_inner_lr_grad")


CASE_FIELDS = ("id", "diagnostic", "note", "inputs", "outputs")  # a record's other fields are its model's spec


def _spec(record):
    return {k: v for k, v in record.items() if k not in CASE_FIELDS}


def _model(record, where, layers=None):
    """The model a case records (its spec's fields), rebuilt by ``refmaml.models.from_spec``, which
    checks every field; ``layers`` names layer kinds of the caller's own."""
    try:
        return models.from_spec(_spec(record), layers=layers)
    except (TypeError, ValueError) as exc:
        raise InvalidFile(f"{where}: {exc}") from None


def _schedule_and_outputs(record, inp, where, P, T):
    """The rate, the step count, l2 and the validated outputs of one case, for theta of shape ``P``."""
    rate = inp["inner_lr"]
    rate = _number(rate, f"{where}.inputs.inner_lr") if not isinstance(rate, list) \
        else _array(rate, f"{where}.inputs.inner_lr", P)
    K = inp["inner_steps"]
    if isinstance(K, bool) or not isinstance(K, int) or not 0 <= K <= 1000:
        raise InvalidFile(f"{where}.inputs.inner_steps must be an integer in [0, 1000]; got {K!r}")
    l2 = _number(inp["l2"], f"{where}.inputs.l2")
    if l2 < 0:
        raise InvalidFile(f"{where}.inputs.l2 must be >= 0; got {l2}")
    out = _object(record["outputs"], f"{where}.outputs", OUTPUTS)
    rate_shape = () if isinstance(rate, float) else P
    outputs = {
        "trajectory": _array(out["trajectory"], f"{where}.outputs.trajectory", (K + 1, T) + P),
        "meta_loss": _number(out["meta_loss"], f"{where}.outputs.meta_loss"),
        "meta_grad": _array(out["meta_grad"], f"{where}.outputs.meta_grad", P),
        "first_order_meta_grad": _array(out["first_order_meta_grad"],
                                        f"{where}.outputs.first_order_meta_grad", P),
    }
    for name in ("inner_lr_grad", "first_order_inner_lr_grad"):
        outputs[name] = _array(out[name], f"{where}.outputs.{name}", rate_shape)
    return rate, K, l2, outputs


def _mask(value, where, model, P):
    """A case's ``inner_mask``: a flat list of ``true``/``false`` (JSON booleans only, no numbers), one
    per parameter of theta (shape ``P``), at least one true, on a network."""
    if model.name in models.MODELS:
        raise InvalidFile(f"{where}: only network cases have an inner_mask; model {model.name!r} has none")
    if not isinstance(value, list) or any(type(b) is not bool for b in value):
        raise InvalidFile(f"{where} must be a flat list of booleans (true where the inner loop adapts)")
    if len(P) != 1 or len(value) != P[0]:
        raise InvalidFile(f"{where} has length {len(value)}; expected theta's length {P[0] if len(P) == 1 else P}")
    if not any(value):
        raise InvalidFile(f"{where} adapts no parameter (every entry false)")
    return np.array(value, dtype=bool)


def _case(record, k, layers=None):
    where = f"cases[{k}]"
    _object(record, where, CASE_FIELDS + ("model",), tuple(record) if isinstance(record, dict) else ())
    cid = record["id"]
    if not isinstance(cid, str) or not cid or len(cid) > 200:
        raise InvalidFile(f"{where}.id must be a non-empty string")
    where = f"case {cid!r}"
    model = _model(record, where, layers)
    if not isinstance(record["diagnostic"], bool) or not isinstance(record["note"], str):
        raise InvalidFile(f"{where}: diagnostic must be true or false and note a string")
    inp = _object(record["inputs"], f"{where}.inputs", INPUTS, ("inner_mask",))
    theta = _array(inp["theta"], f"{where}.inputs.theta", (None,) * model.param_ndim)
    d, outputs = model.dimensions(theta.shape)
    try:
        model.check_parameters(theta.shape, d, "theta", "Xs", (None, None) + (tuple(d) if isinstance(d, tuple) else (d,)))
    except ValueError as exc:
        raise InvalidFile(f"{where}.inputs: {exc}") from None
    P = theta.shape
    example = tuple(d) if isinstance(d, tuple) else (d,)   # one example's input: features, or (C, H, W)
    Xs = _array(inp["Xs"], f"{where}.inputs.Xs", (None, None) + example)
    T, n = Xs.shape[:2]
    Xq = _array(inp["Xq"], f"{where}.inputs.Xq", (T, None) + example)
    m = Xq.shape[1]
    if min((T, n, m) + example) < 1:
        raise InvalidFile(f"{where}: every axis of theta, Xs and Xq needs length >= 1")
    labels = {}
    extra = tuple(outputs) if model.targets == "real" and tuple(outputs) not in ((), (1,)) else ()
    for name, shape in (("ys", (T, n)), ("yq", (T, m))):
        y = _array(inp[name], f"{where}.inputs.{name}", shape + extra, integer=model.targets == "classes")
        if model.targets == "binary" and not np.all(np.isin(y, (0.0, 1.0))) or model.targets == "classes" \
                and (outputs[-1] < 2 or not np.all((y >= 0) & (y < outputs[-1]))):
            raise InvalidFile(f"{where}.inputs.{name}: labels must be "
                              + ("0 or 1" if model.targets == "binary" else f"integers in [0, {outputs[-1]})"))
        labels[name] = y
    rate, K, l2, outputs = _schedule_and_outputs(record, inp, where, P, T)
    mask = _mask(inp["inner_mask"], f"{where}.inputs.inner_mask", model, P) if "inner_mask" in inp else None
    case = _cases.Case(cid, model.name if model.name in models.MODELS else model, theta, Xs, labels["ys"], Xq,
                       labels["yq"], rate, K, l2, record["diagnostic"], record["note"], mask=mask)
    return case, outputs


def load(path, *, layers=None):
    """Read and validate a vectors file (version 1, 2 or 3); returns ``[(Case, outputs dict), ...]``.
    ``layers`` (``{name: class}``) lets it rebuild networks with layer kinds of the caller's own
    (:func:`refmaml.models.from_spec`); without it only refmaml's layers are built."""
    doc = _object(read_json(path), "the file", ("format", "version", "generator", "conventions", "cases"))
    if doc["format"] != "refmaml-vectors":
        raise InvalidFile(f"format must be 'refmaml-vectors'; got {doc['format']!r}")
    if doc["version"] not in _cases.VERSIONS:
        raise InvalidFile(f"vectors version {doc['version']!r}; "
                          f"this refmaml reads versions {', '.join(map(repr, _cases.VERSIONS))}")
    if not isinstance(doc["cases"], list) or not doc["cases"]:
        raise InvalidFile("cases must be a non-empty list")
    loaded = [_case(r, k, layers) for k, r in enumerate(doc["cases"])]
    if doc["version"] == "1" and any(not isinstance(c.model, str) or c.model not in _cases.MODELS[:2]
                                     for c, _ in loaded):
        raise InvalidFile("version 1 vectors hold logistic and softmax cases only")
    masked = [c.id for c, _ in loaded if c.mask is not None]
    if masked and doc["version"] != "3":
        raise InvalidFile(f"case {masked[0]!r} has an inner_mask, which needs vectors version 3")
    ids = [c.id for c, _ in loaded]
    if len(set(ids)) != len(ids):
        raise InvalidFile("case ids must be unique")
    return loaded


def _options(value):
    """A results file's ``options``: which of ``check()``'s options it answers."""
    _object(value, "options", (), ("model", "steps", "l2", "lr_grad", "inner_mask"))
    for flag in ("l2", "lr_grad", "inner_mask"):
        if flag in value and not isinstance(value[flag], bool):
            raise InvalidFile(f"options.{flag} must be true or false; got {value[flag]!r}")
    networks = [_cases.network_name(m) for m in _cases.all_networks()]
    if "model" in value and value["model"] not in (*OPTION_MODELS, *networks):
        raise InvalidFile(f"options.model must be 'logistic', 'softmax', 'both', 'linear' or one of "
                          f"{', '.join(networks)}; got {value['model']!r}")
    if "steps" in value:
        steps = value["steps"]
        if not isinstance(steps, list) or not steps or any(
                isinstance(k, bool) or k not in _cases.STEPS for k in steps):
            raise InvalidFile(f"options.steps must be a non-empty list of step counts from {list(_cases.STEPS)}; "
                              f"got {steps!r}")
    return value


def read_results(path):
    """Read and validate a results file: ``(dtype, {case id: Answer}, options, vectors version)``,
    checked against that version's cases (known ids, right shapes)."""
    raw = read_json(path)
    if isinstance(raw, dict) and raw.get("format") == "refmaml-vectors":
        raise InvalidFile(f"{path}: this is a vectors file, not a results file; run your implementation on "
                          "its cases and check a results file (results.schema.json)")
    doc = _object(raw, "the file", ("format", "vectors_version", "results"), ("dtype", "implementation", "options"))
    if doc["format"] != "refmaml-results":
        raise InvalidFile(f"format must be 'refmaml-results'; got {doc['format']!r}")
    version = doc["vectors_version"]
    if version not in _cases.VERSIONS:
        raise InvalidFile(f"results are for vectors version {version!r}; "
                          f"this refmaml checks versions {', '.join(map(repr, _cases.VERSIONS))}")
    dtype = doc.get("dtype", "float64")
    if dtype not in ("float64", "float32"):
        raise InvalidFile(f"dtype must be 'float64' or 'float32'; got {dtype!r}")
    options = _options(doc.get("options", {}))
    if version == "1" and options.get("model", "both") not in OPTION_MODELS[:3]:
        raise InvalidFile(f"options.model {options['model']!r} needs vectors version 2")
    if "model" in options and options["model"] not in OPTION_MODELS and options["model"] not in \
            [_cases.network_name(m) for m in _cases.all_networks(version)]:
        raise InvalidFile(f"options.model {options['model']!r} needs vectors version 3")
    masked = options.get("inner_mask", False)
    if masked:
        maskable = [_cases.network_name(m) for m in _cases.MASKED_NETWORKS(version)]
        if not maskable:
            raise InvalidFile("options.inner_mask needs vectors version 3 (the first with masked cases)")
        if options.get("model", maskable[0]) not in maskable:
            raise InvalidFile(f"options.inner_mask: the vectors hold masked (ANIL) cases for {', '.join(maskable)} "
                              f"only; got options.model {options['model']!r}")
    results = doc["results"]
    if not isinstance(results, dict) or not results:
        raise InvalidFile("results must be a non-empty object keyed by case id")
    known = {c.id: c for c in _cases.all_cases(version)}
    for cid in results:
        if cid in known and (known[cid].mask is not None) != masked:
            raise InvalidFile(f"results answers case {cid!r}, " + (
                "a case without inner_mask, in a file declaring options.inner_mask true; answer the masked "
                "cases in one file, the others in another" if masked else
                "a case with ANIL's inner_mask (its inputs.inner_mask): declare \"inner_mask\": true in "
                "options, in a file of masked cases only"))
    produced = {}
    for cid, entry in results.items():
        if cid not in known:
            raise InvalidFile(f"results has an unknown case id {cid!r}")
        case = known[cid]
        where = f"results[{cid!r}]"
        _object(entry, where, ("meta_loss", "meta_grad"), ("inner_lr_grad",))
        rate_grad = None
        if "inner_lr_grad" in entry:
            rate_grad = _array(entry["inner_lr_grad"], f"{where}.inner_lr_grad", np.shape(case.inner_lr))
        produced[cid] = answers.Answer(_number(entry["meta_loss"], f"{where}.meta_loss"),
                                       _array(entry["meta_grad"], f"{where}.meta_grad", case.theta.shape),
                                       rate_grad)
    return dtype, produced, options, version
