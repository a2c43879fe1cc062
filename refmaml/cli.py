"""The ``refmaml`` command: parses arguments, calls the library, prints."""

import argparse
import dataclasses
import os
import sys
import textwrap

from . import __version__, _malloc

from .presets import PRESETS, plan
from .tasks import FAMILIES
from .train import METHODS, Config


def _presets_text():
    keys = ("inner_lr", "inner_steps", "iterations", "meta_batch", "outer_lr", "support", "query")
    lines = ["presets (the defaults of each family; options given override them):"]
    for family, values in PRESETS.items():  # wrapped to 100 columns, continued under the values
        lines += textwrap.wrap(f"  {family:17s} " + ", ".join(f"{k} {values[k]}" for k in keys), 100,
                               subsequent_indent=" " * 20, break_on_hyphens=False)
    return "\n".join(lines)


def _fail(command, exc):
    print(f"refmaml {command}: {exc}", file=sys.stderr)
    return 2


def _writable(directory, what):
    """Create ``directory`` if needed (and say so) and check that a file can be written there,
    before any work."""
    import tempfile

    try:
        if not os.path.isdir(directory):
            os.makedirs(directory)
            print(f"created the folder {directory} ({what})", file=sys.stderr)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ValueError(f"{what} {directory!r} cannot be written ({exc.strerror or exc})") from None


def _flag_range(value, flag, minimum, maximum):
    """An integer option in ``[minimum, maximum]``, or a ValueError naming the flag."""
    if not minimum <= value <= maximum:
        raise ValueError(f"{flag} must be an integer from {minimum} to {maximum}; got {value}")


def _flags_apply(given, method):
    """Refuse a training option that the method would ignore: ``--lam`` is implicit MAML's alone, and
    the methods that are not trained (zero, random) take no iterations, meta-batch or outer rate."""
    from .train import UNTRAINED

    if "lam" in given and method != "imaml":
        raise ValueError(f"--lam is implicit MAML's proximal strength (--method imaml); it does not apply to "
                         f"--method {method}")
    ignored = [f"--{k.replace('_', '-')}" for k in ("iterations", "meta_batch", "outer_lr") if k in given]
    if method in UNTRAINED and ignored:
        raise ValueError(f"--method {method} is not meta-trained; {', '.join(ignored)} would be ignored")


def _verify(args):
    from . import verify

    if args.seed < 0:
        return _fail("verify", f"--seed must be a non-negative integer; got {args.seed}")
    rows = verify.run(seed=args.seed)
    print(verify.format_table(rows))
    failed = sum(not r.passed for r in rows)
    backends = sorted({r.backend for r in rows})
    print(f"\n{len(rows) - failed} passed, {failed} failed "
          f"(seed {args.seed}; backends: {', '.join(backends)})")
    return 1 if failed else 0


def _audit(args):
    from . import audit

    rows = audit.run()
    print(audit.format_table(rows))
    checked = [r for r in rows if r.reproduced is not None]
    failed = sum(not r.reproduced for r in checked)
    wrong = sum(r.claim.verdict != "correct" for r in rows)
    print(f"\n{len(rows)} claims, {wrong} not correct as written\n{len(checked)} checked by "
          f"computation: {len(checked) - failed} reproduce their verdict, {failed} do not"
          f"\n(details: {audit.ERRATA})")
    return 1 if failed else 0


def _vectors(args):
    from .oracle import vectors

    try:
        _writable(args.out, "--out")
        paths = vectors.write(args.out, version=args.vectors_version)
    except (ValueError, OSError) as exc:
        return _fail("vectors", exc)
    for path in paths:
        print(path)
    return 0


def _check(args):
    from .oracle import check_file

    code, text = check_file(args.results, as_json=args.json)
    print(text, file=sys.stderr if code == 2 else sys.stdout)
    return code


def _finish(report, out, seconds=None, all_steps=False):
    from .report import format_table, write

    print(format_table(report, all_steps=all_steps))
    json_path, figure = write(report, out)
    print(f"\nresults: {json_path}")
    print(f"figure:  {figure}" if figure else
          "figure:  not drawn (matplotlib is not installed): pip install 'refmaml[plot]'")
    if seconds is not None:
        print(f"time:    {seconds:.1f} s")
    return 0


def _needs_data(family):
    if family.startswith("digit"):  # digits-binary, digits-nway, digit-images
        try:
            import sklearn  # noqa: F401
        except ImportError:
            print(f"refmaml: the {family} family needs scikit-learn, which ships the digits data "
                  "(no download): pip install 'refmaml[data]'", file=sys.stderr)
            return False
    return True


def _demo(args):
    import time

    from . import demo

    if not _needs_data(args.family):
        return 2
    from . import train

    try:
        _flag_range(args.eval_tasks, "--eval-tasks", 2, train.MAX_TASKS)
        _flag_range(args.seed, "--seed", 0, train.MAX_SEED)
        train.require_backend(args.backend)
        _writable(args.out, "--out")
    except (ValueError, ImportError) as exc:
        return _fail("demo", exc)
    _malloc.keep_freed_blocks()
    t0 = time.perf_counter()
    print(f"meta-training {len(plan(args.family).methods)} methods on {args.family} ({args.backend}), "
          f"then evaluating on {args.eval_tasks} held-out tasks ...", file=sys.stderr)
    try:  # a missing CuPy is found when the first run starts, before any work
        report = demo.compare(args.family, seed=args.seed, backend=args.backend, eval_tasks=args.eval_tasks,
                              progress=not args.quiet)
    except ImportError as exc:
        return _fail("demo", exc)
    return _finish(report, args.out, time.perf_counter() - t0, args.all_steps)


def _train(args):
    import time

    from . import report as results
    from . import train

    given = {k: getattr(args, k) for k in (f.name for f in dataclasses.fields(train.Config))
             if getattr(args, k, None) is not None}
    target = args.checkpoint or args.resume  # a resumed run goes on saving where it came from
    try:
        if args.resume:
            saved = train.load(args.resume)
            config = train.Config(**{**saved.config.as_dict(), **given})
        else:
            preset = PRESETS[given.get("family", train.Config.family)]
            config = train.Config(**{**preset, **given})
        config = config.validated()
        _flags_apply(given, config.method)
        if not _needs_data(config.family):
            return 2
        _flag_range(args.eval_tasks, "--eval-tasks", 2, train.MAX_TASKS)
        _flag_range(args.checkpoint_every, "--checkpoint-every", 0, train.MAX_ITERATIONS)
        train.require_backend(config.backend)  # before any folder is made
        if args.resume and saved.iteration > config.iterations and config.method not in train.UNTRAINED:
            raise ValueError(f"the checkpoint {args.resume} holds {saved.iteration} iterations, more than "
                             f"--iterations {config.iterations}: give --iterations {saved.iteration} or more")
        _writable(args.out, "--out")
        if target:
            _writable(os.path.dirname(os.path.abspath(target)), "the folder of the checkpoint")
        if args.resume and saved.iteration == config.iterations:
            print(f"the run saved in {args.resume} is complete at {saved.iteration} iterations; its results:",
                  file=sys.stderr)
        elif target:
            if args.resume:
                print(f"resuming {args.resume} from iteration {saved.iteration} of {config.iterations}",
                      file=sys.stderr)
            print(f"checkpoints: {target} (every {args.checkpoint_every} iterations and at the end)"
                  if args.checkpoint_every else f"checkpoint: {target} (at the end)", file=sys.stderr)
        _malloc.keep_freed_blocks()
        t0 = time.perf_counter()
        state = train.train(config, checkpoint_path=target, checkpoint_every=args.checkpoint_every,
                            resume=args.resume, progress=not args.quiet)
        seconds = time.perf_counter() - t0
    except (TypeError, ValueError, OSError, ImportError) as exc:  # InvalidCheckpoint is a ValueError
        return _fail("train", exc)
    try:
        report = results.report({config.method: (state, seconds)}, eval_tasks=args.eval_tasks)
    except ValueError as exc:  # the evaluation's adaptation overflowed (the run is saved, if a checkpoint was asked)
        return _fail("train", f"the evaluation after training failed: {exc}")
    code = _finish(report, args.out, seconds, args.all_steps)
    if target:
        print(f"checkpoint: {target} (iteration {state.iteration})")
    return code


def _explain(args):
    from . import explain

    try:
        obj, name, inputs = explain.problem(args.model, features=args.features, support=args.support, query=args.query,
                                            steps=args.steps, inner_lr=args.inner_lr, l2=args.l2, seed=args.seed,
                                            rates=args.rates, sizes=args.sizes, activation=args.activation,
                                            loss=args.loss)
        result = explain.walk(obj, name, inputs, first_order=args.first_order, form=args.form,
                              layers=args.layers or args.model == "conv")
    except (TypeError, ValueError) as exc:
        return _fail("explain", exc)
    print(explain.to_json(result) if args.json else explain.to_text(result))
    return 0


def _figures(args):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return _fail("figures", "drawing the figures needs matplotlib, which is not installed: "
                                "pip install 'refmaml[plot]'")
    from . import figures

    try:
        _writable(args.out, "--out")
        paths = figures.make_all(args.out)
    except (ValueError, OSError) as exc:
        return _fail("figures", exc)
    for path in paths:
        print(path)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="refmaml",
        description="Reference MAML for logistic models, linear regression and multilayer perceptrons: "
                    "exact meta-gradients, verified.",
    )
    parser.add_argument("--version", action="version", version=f"refmaml {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", help="check every derivative identity on seeded random instances")
    p.add_argument("--seed", type=int, default=0, help="seed of the random instances (default 0)")
    p.set_defaults(run=_verify)
    p = sub.add_parser("vectors", help="write the test vectors (JSON, .npz and their schemas) to a directory")
    p.add_argument("--out", required=True, help="directory to write into (created if missing)")
    p.add_argument("--version", dest="vectors_version", choices=["1", "2", "3"], default="3",
                   help="which version to write (default 3; versions 1 and 2 stay frozen and readable)")
    p.set_defaults(run=_vectors)
    p = sub.add_parser("check", help="judge results computed elsewhere on the test vectors; diagnose bugs")
    p.add_argument("results", help="a JSON file in the results schema (results.schema.json)")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON: passed, diagnosis, message, localization, tolerance, "
                        "missing, and one row per case")
    p.set_defaults(run=_check)
    p = sub.add_parser("demo", help="meta-train every method on one task family and compare them on "
                                     "held-out tasks (the main job; one to two minutes on two cores)")
    p.add_argument("--family", default="sinusoid", choices=list(FAMILIES),
                   help="task family (default sinusoid, the MAML paper's regression; the digits families "
                        "and digit-images, few-shot image classification with a small convolutional "
                        "network, need scikit-learn)")
    p.add_argument("--out", default="refmaml-demo", help="directory for results.json and figure.png "
                                                         "(default ./refmaml-demo)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--backend", default="numpy", choices=("numpy", "cupy"),
                   help="array library (default numpy; cupy needs CuPy and an NVIDIA GPU)")
    p.add_argument("--eval-tasks", type=int, default=500, help="held-out tasks (default 500)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--all-steps", dest="all_steps", action="store_true",
                   help="print every adaptation step's column (default: steps 0, 1 and the last)")
    p.set_defaults(run=_demo)
    p = sub.add_parser("train", help="meta-train one method; checkpoints, resume, evaluation",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_presets_text())
    fields = {f.name: f.default for f in dataclasses.fields(Config)}

    def preset(name, text):
        """Help text with the default of the default family and a pointer to the others."""
        return f"{text} (default: the family's preset below; {fields['family']}: {PRESETS[fields['family']][name]})"

    p.add_argument("--family", choices=list(FAMILIES), help=f"task family (default {fields['family']})")
    p.add_argument("--method", choices=METHODS, help=f"default {fields['method']}")
    p.add_argument("--inner-lr", dest="inner_lr", type=float,
                   help=preset("inner_lr", "inner rate (Meta-SGD: the rates' initial value)"))
    p.add_argument("--inner-steps", dest="inner_steps", type=int, help=preset("inner_steps", "inner gradient steps K"))
    p.add_argument("--meta-batch", dest="meta_batch", type=int, help=preset("meta_batch", "tasks per meta-batch"))
    p.add_argument("--iterations", type=int, help=preset("iterations", "meta-training iterations"))
    p.add_argument("--outer-lr", dest="outer_lr", type=float, help=preset("outer_lr", "Adam's step size"))
    p.add_argument("--support", type=int, help=preset("support", "support examples per task (n)"))
    p.add_argument("--query", type=int, help=preset("query", "query examples per task (m)"))
    p.add_argument("--l2", type=float, help=f"ridge coefficient of the inner (support) loss (default {fields['l2']})")
    p.add_argument("--lam", type=float, help=preset("lam", "iMAML's proximal strength"))
    p.add_argument("--seed", type=int, help=f"training seed (default {fields['seed']})")
    p.add_argument("--backend", choices=("numpy", "cupy"), help=f"array library (default {fields['backend']}; "
                                                               "cupy needs CuPy and an NVIDIA GPU)")
    p.add_argument("--eval-every", dest="eval_every", type=int,
                   help=f"iterations between held-out evaluations of the training curve, 0 for none "
                        f"(default {fields['eval_every']}; sinusoid: {PRESETS['sinusoid']['eval_every']})")
    p.add_argument("--curve-tasks", dest="curve_tasks", type=int,
                   help=f"held-out tasks of the training curve (default {fields['curve_tasks']})")
    p.add_argument("--checkpoint", help="save the training state here (atomically) at intervals and at the end; "
                                        "a resumed run saves to the checkpoint it resumed from unless this "
                                        "names another (the folder is created if missing)")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=100,
                   help="iterations between checkpoints, 0 for the end only (default 100)")
    p.add_argument("--resume", help="continue the run saved in this checkpoint, to --iterations (at least the "
                                    "iterations it holds); other options given must match it")
    p.add_argument("--eval-tasks", type=int, default=500, help="held-out tasks of the final evaluation (default 500)")
    p.add_argument("--out", default="refmaml-train", help="directory for results.json and figure.png "
                                                          "(default ./refmaml-train)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--all-steps", dest="all_steps", action="store_true",
                   help="print every adaptation step's column (default: steps 0, 1 and the last)")
    p.set_defaults(run=_train)
    p = sub.add_parser("explain", help="walk through one meta-gradient with its numbers, each line with its "
                                        "equation")
    p.add_argument("--model", choices=("logistic", "softmax", "linear", "conv"),
                   help="the model (default logistic; conv: a tiny image network, 1x4x4 inputs, a 2x2 "
                        "convolution, batch norm, ReLU, max-pooling, two classes; --sizes gives an MLP instead)")
    p.add_argument("--features", type=int, default=2, help="features d (default 2)")
    p.add_argument("--support", type=int, default=3, help="support examples n (default 3)")
    p.add_argument("--query", type=int, default=2, help="query examples m (default 2)")
    p.add_argument("--steps", type=int, default=2, help="inner steps K (default 2)")
    p.add_argument("--inner-lr", dest="inner_lr", type=float, default=0.5, help="inner rate (default 0.5)")
    p.add_argument("--rates", default="scalar", choices=("scalar", "per-step", "per-parameter"),
                   help="one rate, one per step, or one per parameter, drawn around --inner-lr; array rates "
                        "show the rate gradient (default scalar)")
    p.add_argument("--l2", type=float, default=0.0, help="ridge coefficient of the support loss (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    p.add_argument("--first-order", dest="first_order", action="store_true",
                   help="make the first-order gradient the answer and show the reverse pass it drops")
    p.add_argument("--sizes", help="a network instead: layer sizes, e.g. 2,3,1 (refmaml.models.MLP)")
    p.add_argument("--activation", choices=("tanh", "relu"), help="the --sizes network's activation (default tanh)")
    p.add_argument("--loss", choices=("mse", "logistic", "softmax"), help="the --sizes network's head (default mse)")
    p.add_argument("--form", default="primal", choices=("primal", "dual"),
                   help="dual: show the same computation in the Gram form as well (linear models)")
    p.add_argument("--layers", action="store_true",
                   help="a network's forward and backward pass at theta_0 layer by layer (default with --model conv)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.set_defaults(run=_explain)
    p = sub.add_parser("audit", help="check every claim of the seed tutorial and print the errata table")
    p.set_defaults(run=_audit)
    p = sub.add_parser("figures", help="draw the figures of the derivations (PNG) and write the numbers they "
                                        "draw (figures.json); needs matplotlib")
    p.add_argument("--out", default="refmaml-figures",
                   help="directory to write into (created if missing; default ./refmaml-figures; the "
                        "committed copies: --out derivations/figures)")
    p.set_defaults(run=_figures)
    return parser


def _interrupted(args):
    """The one line Ctrl-C prints: for a training run with a checkpoint, where it is, at which
    iteration, and the command that resumes it."""
    target = getattr(args, "checkpoint", None) or getattr(args, "resume", None)
    if args.command != "train" or not target or not os.path.exists(target):
        return f"refmaml {args.command}: interrupted; nothing was saved"
    from . import train

    try:
        iteration = f"iteration {train.load(target).iteration}"
    except (OSError, ValueError):
        iteration = "unreadable"
    more = f" --iterations {args.iterations}" if getattr(args, "iterations", None) is not None else ""
    return (f"refmaml train: interrupted; the last checkpoint is {target} ({iteration}); resume with: "
            f"refmaml train --resume {target}{more}")


def main(argv=None):
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except KeyboardInterrupt:
        print("refmaml: interrupted" if args is None else _interrupted(args), file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of the output went away (`refmaml explain | head -1`): stop quietly, and point
        # stdout at the null device so that the interpreter's last flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
