#!/usr/bin/env python
"""Thin wrapper: `python scripts/stats.py ...` = `vslm stats ...` (see --help)."""
import sys

from vslm.cli import main

sys.exit(main(["stats", *sys.argv[1:]]))
