#!/usr/bin/env python
"""Thin wrapper: `python scripts/convert.py ...` = `vslm convert ...` (see --help)."""
import sys

from vslm.cli import main

sys.exit(main(["convert", *sys.argv[1:]]))
