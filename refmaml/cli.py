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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
