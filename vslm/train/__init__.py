"""Training: llamafactory-cli train/export for every stage of a recipe, run records, LlamaBoard presets."""
