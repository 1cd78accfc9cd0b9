#!/usr/bin/env python
"""Thin wrapper: `python scripts/corpus.py ...` = `vslm corpus ...` (see --help)."""
import sys

from vslm.cli import main

sys.exit(main(["corpus", *sys.argv[1:]]))
