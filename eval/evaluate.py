#!/usr/bin/env python
"""Thin wrapper: `python eval/evaluate.py <recipe> --base-url URL --model NAME` = `vslm eval ...`.

Evaluates one served model (vLLM or any OpenAI-compatible endpoint) on the recipe's held-out set,
greedily, and writes answers, per-row scores and the summary as JSON. `vslm demo` runs base and
fine-tuned side by side and writes the before/after report.
"""
import sys

from vslm.cli import main

sys.exit(main(["eval", *sys.argv[1:]]))
