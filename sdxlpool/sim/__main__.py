"""`python -m sdxlpool.sim FLAGS`: the same as `sdxlpool sim-worker FLAGS`, without loading the whole CLI."""

import sys

from sdxlpool._args import Parser, run_handler
from sdxlpool.sim._cli import add_parser

parser = Parser(prog="python -m sdxlpool.sim")
add_parser(parser.add_subparsers(dest="command", parser_class=Parser))
sys.exit(run_handler(parser.parse_args(["sim-worker", *sys.argv[1:]]), "python -m sdxlpool.sim"))
