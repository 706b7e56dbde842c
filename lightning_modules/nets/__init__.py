"""Networks of both papers behind one registry: ``create_model(name, in_channels, classes)``.

Importing this package imports every architecture module, which registers its builders.
"""

from lightning_modules.nets.registry import (
    ModelEntry,
    create_model,
    list_models,
    model_entry,
    register_model,
)

# Architecture modules register themselves on import; keep this list in sync with the folder.
# (Each issue appends its modules here.)

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry", "register_model"]
