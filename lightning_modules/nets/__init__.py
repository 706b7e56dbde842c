"""Networks of both papers behind one registry: ``create_model(name, in_channels, classes)``.

Importing this package imports every module in it; each architecture module registers its
builders with ``@register_model`` on import, so adding a file is all a new model needs.
"""

import importlib
import pkgutil

from lightning_modules.nets.registry import (
    MODELS,
    ModelEntry,
    create_model,
    list_models,
    model_entry,
    register_model,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["MODELS", "ModelEntry", "create_model", "list_models", "model_entry", "register_model"]
