"""The bottom layer, imported by everything and importing no other vslm module: errors, paths, JSON/JSONL files
and atomic writes, the OpenAI-compatible HTTP stack, text similarity."""
