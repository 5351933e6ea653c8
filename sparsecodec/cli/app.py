"""The ``sparsecodec`` entry point: one parser with a sub-command per job, and the error convention.

Exit codes: 0 success; 1 the operation failed (a missing or damaged file, a failed check), with one
line on stderr; 2 bad arguments (argparse's convention); 130 interrupted. Unexpected exceptions are
bugs and keep their traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import cmd_bench, cmd_compress, cmd_demo, cmd_info, cmd_inspect
from .console import print_error
from .errors import CLIError, first_line

PROG = "sparsecodec"
COMMANDS = (cmd_demo, cmd_compress, cmd_inspect, cmd_bench, cmd_info)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Pruned, quantised neural-network weights in compact, fixed-rate decodable formats.",
        epilog=f"Run '{prog} COMMAND --help' for the options of a command.",
    )
    from ..info import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    where = f"{prog} {args.command}"
    try:
        return int(args.run(args))
    except CLIError as exc:
        print_error(where, str(exc))
        return exc.code
    except OSError as exc:  # missing, unreadable or unwritable files: the message names the file
        name = f"{exc.filename}: " if exc.filename and str(exc.filename) not in str(exc.strerror) else ""
        print_error(where, f"{name}{exc.strerror or first_line(exc)}")
        return 1
    except ImportError as exc:  # an optional dependency of this command is missing
        print_error(where, first_line(exc))
        return 1
    except KeyboardInterrupt:
        print_error(where, "interrupted")
        return 130


def console_script() -> None:
    """``[project.scripts] sparsecodec``."""
    sys.exit(main())
