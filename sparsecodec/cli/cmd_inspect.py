"""``sparsecodec inspect FILE``: the layers of a compressed model file (or one ``.spcx`` stream), their
formats and bits per weight, the file and stream format versions, and a CRC32 check of every stream."""

from __future__ import annotations

import argparse
import dataclasses
import json

from .errors import CLIError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "inspect",
        help="layers, formats, bits/weight, stream versions and CRC check of a compressed file",
        description="Describe a file written by 'sparsecodec compress', 'sparsecodec demo' or sparsecodec.save "
        "(or a single .spcx stream) without building the model, and verify the CRC32 of every compressed "
        "stream. A damaged file is reported in one line with exit status 1.",
    )
    parser.add_argument("file", metavar="FILE", help="a sparsecodec model file (.safetensors) or a .spcx stream")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..inspection import inspect_file, totals

    try:
        summary = inspect_file(args.file)
    except ValueError as exc:  # damaged, truncated, foreign or too-new file (StreamError is a ValueError)
        raise CLIError(str(exc)) from None

    if args.json:
        data = dataclasses.asdict(summary)
        data["totals"] = totals(summary.layers)
        print(json.dumps(data, indent=1))
        return 0

    from .console import make_console
    from .tables import layer_table, plural, size_text

    console = make_console()
    version = f", version {summary.file_version}" if summary.file_version is not None else ""
    console.print(f"{summary.path}: {summary.container}{version}, {size_text(summary.file_bytes)}")
    console.print(layer_table(summary.layers, "Layers", streams=True))
    n_streams = sum(len(r.stream_versions) for r in summary.layers)
    checked = f"{plural(n_streams, 'compressed stream')}"
    if summary.checksummed_tensors:
        checked += f" and {plural(summary.checksummed_tensors, 'other tensor')}"
    elif any(not r.compressed for r in summary.layers):
        checked += " (the file has no checksums for its other tensors, such as dense layers)"
    console.print(f"integrity: every CRC32 matches: {checked}")
    return 0
