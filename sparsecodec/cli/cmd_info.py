"""``sparsecodec info``: package and stream-format versions, compiler, SIMD level, threads."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "info",
        help="versions, compiler, SIMD level in use, OpenMP threads (for bug reports)",
        description="Print package and stream-format versions, the compiler, the SIMD level in use and the "
        "OpenMP thread count.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..info import build_info, format_build_info

    print(format_build_info(build_info()))
    return 0
