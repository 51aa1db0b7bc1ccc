"""Decoding methods as step functions, one module each; the batch loops that call them: `collector.decode`."""
