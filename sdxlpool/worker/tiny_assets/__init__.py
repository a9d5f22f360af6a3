"""The tiny model's fine-tune assets, each in the format real files have (one module per kind)."""
