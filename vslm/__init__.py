"""VSLM Recipes: shared logic behind the recipes, datasets, serving and evaluation of this repository."""

__version__ = "0.1.0"
