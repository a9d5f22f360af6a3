"""`python -m sdxlpool.sim FLAGS`: `sdxlpool sim-worker FLAGS` (same flags, messages and exit codes),
without loading the whole CLI."""

import sys

from sdxlpool._args import Parser, run_handler
from sdxlpool.sim._cli import add_parser

parser = Parser(prog="sdxlpool")
add_parser(parser.add_subparsers(dest="command", parser_class=Parser))
sys.exit(run_handler(parser.parse_args(["sim-worker", *sys.argv[1:]]), "sdxlpool sim-worker"))
