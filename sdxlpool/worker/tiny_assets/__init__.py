"""Test assets written beside the tiny model (`write_tiny_model`), in the formats real files have."""
