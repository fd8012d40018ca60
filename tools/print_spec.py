#!/usr/bin/env python
"""Print a resolved spec: every value with the file or --set override that set it.

The spec is validated and its model built, so composition mistakes (feature names, levels,
num_classes vs the dataset) are reported here as they would be by train.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from anchorage.core.cli import make_parser, run_tool


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("spec", help="spec file (a path, or a name in the shipped specs/)")
    parser.add_argument(
        "--no-defaults", action="store_true", help="show only values set by files or --set"
    )
    args = parser.parse_args(argv)

    from anchorage.core import check_spec, load_spec
    from anchorage.core.describe import describe_spec

    spec = load_spec(args.spec, args.overrides)
    check_spec(spec)
    print(f"# {spec.path}")
    print(describe_spec(spec, defaults=not args.no_defaults))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
