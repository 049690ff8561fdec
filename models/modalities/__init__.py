"""One object per modality (text, music, image, series) owning all that a modality is: which
request fields apply and their checks, JSON and file encoding, Parquet conversion and tensors,
and evaluation metrics. Importing this package registers every module in it."""
import importlib
import pkgutil

from genray.models.modalities.base import Modality, get, names, register

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["Modality", "get", "names", "register"]
