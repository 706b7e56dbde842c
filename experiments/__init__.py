"""Command-line entry point (``ptx``) and one config per paper experiment."""
