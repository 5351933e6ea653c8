"""``python -m sparsecodec info`` prints the build; ``python -m sparsecodec demo`` runs the demo."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparsecodec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="package and stream-format versions, compiler, SIMD level, threads")
    demo = sub.add_parser("demo", help="encode a pruned layer, check the round trip, report bits/weight and speed")
    demo.add_argument("--rows", type=int, default=4096)
    demo.add_argument("--cols", type=int, default=4096)
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "info":
        from .info import build_info, format_build_info

        print(format_build_info(build_info()))
        return 0
    from .demo import run_demo

    return run_demo(rows=args.rows, cols=args.cols, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
