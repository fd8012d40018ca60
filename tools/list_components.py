#!/usr/bin/env python
"""List registered components (all kinds, or one), with provider and parameters."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from anchorage.core.cli import make_parser, run_tool
from anchorage.core.errors import AnchorageError


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__, spec=False)
    parser.add_argument(
        "kind", nargs="?", help="one registry kind (backbone, matcher, loss, ...); all when omitted"
    )
    parser.add_argument("--names", action="store_true", help="names only, one per line")
    args = parser.parse_args(argv)

    from anchorage.core.describe import describe_entry
    from anchorage.core.plugins import ensure_plugins_loaded
    from anchorage.core.registry import REGISTRIES

    if args.kind is not None and args.kind not in REGISTRIES:
        raise AnchorageError(f"unknown kind {args.kind!r}; kinds: {', '.join(REGISTRIES)}")
    ensure_plugins_loaded()
    kinds = [args.kind] if args.kind else list(REGISTRIES)
    for kind in kinds:
        registry = REGISTRIES[kind]
        entries = list(registry)
        if args.names:
            print("\n".join(e.name for e in entries))
            continue
        print(f"{kind} ({len(entries)}): {registry.doc}")
        for entry in entries:
            print("\n".join("  " + line for line in describe_entry(entry)))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
