"""The tiny model's extra test assets, one writer per module, called by `worker.tiny.write_tiny_model`."""
