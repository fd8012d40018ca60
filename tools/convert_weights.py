#!/usr/bin/env python
"""Convert another library's weights into an anchorage checkpoint for a spec's model.

Example (torchvision SSD300 weights, downloaded beforehand to a local file):

    python tools/convert_weights.py --from torchvision ssd300_vgg16_coco-b556d3b4.pth \\
        --spec specs/ssd300_vgg16_coco.yaml --out ssd300_vgg16_coco.pt

The source file is read with weights_only=True; the result loads with load_checkpoint (or as
the CHECKPOINT argument: tools/eval.py SPEC CHECKPOINT). Converters exist for the model types
listed by --list.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from anchorage.core.cli import make_parser, run_tool


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("src", nargs="?", help="source state-dict file")
    parser.add_argument("--from", dest="source", default="torchvision", help="source library")
    parser.add_argument("--spec", help="spec whose model the weights are for")
    parser.add_argument("--out", help="anchorage checkpoint to write")
    parser.add_argument("--list", action="store_true", help="list the available converters")
    args = parser.parse_args(argv)

    from anchorage.core import load_spec
    from anchorage.core.registry import MODELS

    MODELS.names()  # imports every plugin, and with them their converters
    from anchorage.plugins.models.convert import CONVERTERS, convert_weights

    if args.list:
        for source, model_type in sorted(CONVERTERS):
            print(
                f"{source}\t{model_type}\t{CONVERTERS[source, model_type].__doc__.splitlines()[0]}"
            )
        return 0
    missing = [name for name in ("src", "spec", "out") if getattr(args, name) is None]
    if missing:
        parser.error(f"missing {', '.join('--' + m if m != 'src' else 'SRC' for m in missing)}")
    spec = load_spec(args.spec, args.overrides)
    path = convert_weights(args.source, args.src, spec, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
