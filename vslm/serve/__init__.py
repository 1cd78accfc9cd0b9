"""Serving: the OpenAI-compatible servers (llamafactory-cli api, vLLM, llama.cpp) and GGUF export."""
