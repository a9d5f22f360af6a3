"""Run the mutation records: break the product on purpose and check the named tests fail.

    python reliability/mutations.py                 # every mutation (minutes: each runs its tests)
    python reliability/mutations.py NAME [NAME ...] # some (names: the files in reliability/mutations/)
    python reliability/mutations.py --baseline NAME # also check the tests pass without the mutation
    python reliability/mutations.py --check         # only: every patch parses and applies
    python reliability/mutations.py --markdown      # the table for docs/reliability.md

Exits 1 when a mutation survives its tests or cannot be run, 2 on a bad argument or mutation file.
How it works: sdxlpool.testing.mutations.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sdxlpool.testing.mutations import all_mutations, applies, markdown, run

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Break the product on purpose; the named tests must fail.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="mutations to run (default: all)")
    parser.add_argument("--check", action="store_true", help="only check that every patch parses and applies")
    parser.add_argument("--baseline", action="store_true", help="first check the tests pass without the mutation")
    parser.add_argument("--markdown", action="store_true", help="print the results as a Markdown table")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run (default 600)")
    args = parser.parse_args(argv)
    try:
        mutations = all_mutations(ROOT)
    except ValueError as exc:
        print(f"mutations: error: {exc}", file=sys.stderr)
        return 2
    known = {m.name: m for m in mutations}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        print(f"mutations: error: no such mutation: {', '.join(unknown)} (see reliability/mutations/)",
              file=sys.stderr)
        return 2
    chosen = [known[name] for name in args.names] if args.names else mutations
    if args.check:
        problems = [(m.name, reason) for m in chosen if (reason := applies(m, ROOT)) is not None]
        for name, reason in problems:
            print(f"{name}: {reason}")
        print(f"{len(chosen) - len(problems)} of {len(chosen)} mutations apply")
        return 1 if problems else 0
    rows = []
    for mutation in chosen:
        started = time.monotonic()
        result = run(mutation, ROOT, baseline=args.baseline, timeout=args.timeout)
        rows.append((mutation, result))
        print(f"{mutation.name}: {result} ({time.monotonic() - started:.0f} s)", flush=True)
    if args.markdown:
        print(markdown(rows))
    return 0 if all(result == "caught" for _, result in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
