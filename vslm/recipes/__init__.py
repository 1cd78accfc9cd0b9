"""Recipes: the matrix (templates/matrix.yaml), rendering recipes/*.yaml from it, listing and adding recipes, validating
them with LlamaFactory's own parser, and the resolver (what every stage of a recipe runs with and where it writes)."""
