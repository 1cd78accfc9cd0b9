#!/usr/bin/env python
"""Thin wrapper: `python scripts/distill.py ...` = `vslm distill ...` (see --help)."""
import sys

from vslm.cli import main

sys.exit(main(["distill", *sys.argv[1:]]))
