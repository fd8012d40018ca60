"""Shared command-line behaviour of the tools.

Every tool builds its parser with ``make_parser`` (``--set`` and ``--debug``) and runs its
``main`` through ``run_tool``: user errors (``AnchorageError``, argparse errors) exit with
status 2 and one clear message, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence

from .errors import AnchorageError


def make_parser(description: str, *, spec: bool = True) -> argparse.ArgumentParser:
    """An argparse parser with the options every tool shares."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if spec:
        parser.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY.PATH=VALUE",
            help="override a spec value (repeatable), e.g. --set train.epochs=2",
        )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


LONG_WORD = 1000
"""Characters of one unbroken word of an error message shown in full; longer ones are cut
(paths stay whole: few reach this length)."""


def shorten_long_words(message: str, limit: int = LONG_WORD) -> str:
    """Cut every run of non-space characters longer than ``limit`` (a pasted value, echoed by
    ``--set`` and again by the check that refuses it) to its start, its end and its length, so
    an error stays one readable line."""
    keep = 80

    def cut(match: re.Match) -> str:
        word = match.group(0)
        body = word.rstrip(":;,.'\")]")
        return f"{body[:keep]}…{body[-12:]} ({len(body)} characters){word[len(body) :]}"

    return re.sub(rf"\S{{{limit + 1},}}", cut, message)


def run_tool(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Run a tool's ``main``; map user errors to exit status 2 and interrupts to 130."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        return int(main(args) or 0)
    except AnchorageError as exc:
        if debug:
            raise
        print(f"error: {shorten_long_words(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
