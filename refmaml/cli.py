"""The ``refmaml`` command: parses arguments, calls the library, prints."""

import argparse
import sys

from . import __version__


def _verify(args):
    from . import verify

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
    print(f"\n{len(rows)} claims, {wrong} not correct as written; {len(checked)} checked by "
          f"computation: {len(checked) - failed} reproduce their verdict, {failed} do not "
          f"(details: {audit.ERRATA})")
    return 1 if failed else 0


def _vectors(args):
    from .oracle import vectors

    paths = vectors.write(args.out)
    for path in paths:
        print(path)
    return 0


def _check(args):
    from .oracle import format_report, judge, vectors

    try:
        dtype, produced = vectors.load_results(args.results)
    except vectors.InvalidFile as exc:
        print(f"refmaml check: {exc}", file=sys.stderr)
        return 2
    report = judge.check_results(produced, dtype)
    print(format_report(report))
    return 0 if report.passed else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="refmaml",
        description="Reference MAML for logistic models: exact meta-gradients, verified.",
    )
    parser.add_argument("--version", action="version", version=f"refmaml {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", help="check every derivative identity on seeded random instances")
    p.add_argument("--seed", type=int, default=0, help="seed of the random instances (default 0)")
    p.set_defaults(run=_verify)
    p = sub.add_parser("vectors", help="write the test vectors (JSON, .npz and their schemas) to a directory")
    p.add_argument("--out", required=True, help="directory to write into (created if missing)")
    p.set_defaults(run=_vectors)
    p = sub.add_parser("check", help="judge results computed elsewhere on the test vectors; diagnose bugs")
    p.add_argument("results", help="a JSON file in the results schema (results.schema.json)")
    p.set_defaults(run=_check)
    p = sub.add_parser("audit", help="check every claim of the seed tutorial and print the errata table")
    p.set_defaults(run=_audit)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
