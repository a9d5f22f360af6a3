"""``python -m sdxlpool._reference [--check] [--root DIR]``: write, or check, docs/reference/*.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sdxlpool._reference._pages import REGENERATE, stale_pages, write_pages


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdxlpool._reference", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and print a diff when a page is not what the code gives now")
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="the repository root holding docs/reference/ (default: the current directory)")
    args = parser.parse_args(argv)
    if not (args.root / "pyproject.toml").is_file():
        parser.error(f"--root {args.root}: not the repository root (no pyproject.toml)")
    if args.check:
        stale = stale_pages(args.root)
        for diff in stale.values():
            sys.stdout.write(diff)
        if stale:
            print(f"stale: {', '.join(stale)}; regenerate with `{REGENERATE}`", file=sys.stderr)
            return 1
        print("docs/reference: up to date")
        return 0
    for path in write_pages(args.root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
