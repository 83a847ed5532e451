"""The ``twolayer`` command (also ``python -m twolayer``)."""
import argparse
import sys

from .api import BACKENDS, resolve_backend
from .helpers import sanity_check
from .machine import describe


def available_backends():
    """The concrete backends that load here, fastest first."""
    names = []
    for name in BACKENDS[1:]:
        try:
            resolve_backend(name)
        except ImportError:
            continue
        names.append(name)
    return names


def cmd_check(args):
    failed = []
    for name in args.backends or available_backends():
        ok = sanity_check(backend=name, seed=args.seed)
        print(f"{name}: {'passed' if ok else 'FAILED'}")
        if not ok:
            failed.append(name)
    return 1 if failed else 0


def cmd_info(args):
    for key, value in describe().items():
        if isinstance(value, list):
            print(f"{key}:")
            for row in value:
                print(f"  {row}")
        else:
            print(f"{key}: {value}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="twolayer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="CS224n's sanity check (gradcheck, N=20, dims (10,5,10)) on every backend")
    check.add_argument("--backends", nargs="+", choices=BACKENDS[1:], help="default: every available backend")
    check.add_argument("--seed", type=int, default=0, help="random seed of the check's data (default 0)")
    check.set_defaults(run=cmd_check)

    info = sub.add_parser("info", help="versions, CPU, cores, BLAS and threading layer")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
