"""`python -m sdxlpool.sim FLAGS`: the same as `sdxlpool sim-worker FLAGS`, for benchmarks and tests."""

import argparse
import logging
import os
import sys
from typing import NoReturn

from sdxlpool.errors import ConfigError
from sdxlpool.sim import add_parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, as `sdxlpool` prints it
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main() -> int:
    parser = _Parser(prog="sdxlpool")
    add_parser(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    args = parser.parse_args(["sim-worker", *sys.argv[1:]])
    logging.basicConfig(level=os.environ.get("SDXLPOOL_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"sdxlpool sim-worker: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


sys.exit(main())
