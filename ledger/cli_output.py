"""How a read command prints: a table for people, or JSON for tools (`-o json`, `--json`).

Every read takes the same two spellings, so a script never guesses which one a
command knows.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson


def add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help="text (default) or json")
    parser.add_argument("--json", dest="output", action="store_const", const="json",
                        help="the same as -o json")


def wants_json(args: argparse.Namespace) -> bool:
    return getattr(args, "output", "text") == "json"


def print_json(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    sys.stdout.flush()
