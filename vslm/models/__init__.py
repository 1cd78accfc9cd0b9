"""Base models: the Qwen tokenizer and the tiny offline models the tests and the CPU demo train."""
