"""``transformers``: Hugging Face classifiers rebuilt from their config — data, never a named factory.

A saved Hugging Face model records ``{"name": "transformers", "kwargs": {"model_class": ..., "config": {...}}}``.
Loading looks the class up in transformers' *own* registry of classification models (its auto mappings from
``model_type`` to class name, for image and sequence classification): the config's ``model_type`` must map to the
recorded class, so a file can only choose among the classifiers transformers itself lists, and ``auto_map``
(remote code) is dropped. Nothing else is imported or called on the file's say-so.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..errors import ConfigError

NAME = "transformers"
_DROPPED = ("auto_map", "custom_pipelines", "transformers_version", "_name_or_path")


def _classes() -> dict[str, str]:
    """model_type -> class name, for every classifier transformers registers itself."""
    from transformers.models.auto import modeling_auto as auto

    out: dict[str, str] = {}
    for mapping in ("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"):
        for model_type, cls in getattr(auto, mapping, {}).items():
            out.setdefault(model_type, cls if isinstance(cls, str) else cls[0])
    return out


def build(input_shape: Sequence[int], num_classes: int, model_class: str, config: dict[str, Any]) -> nn.Module:
    """The classifier ``model_class`` from ``config`` (random initialisation; weights come from the file)."""
    try:
        import transformers
    except ImportError:
        raise ConfigError("model_class: this model is a Hugging Face transformers model; pip install transformers "
                          "to load it.") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ConfigError(f"config: expected a transformers config dict with a 'model_type'; got {config!r:.80}.")
    known = _classes()
    if known.get(config["model_type"]) != model_class:
        raise ConfigError(f"model_class: {model_class!r} is not transformers' classifier for model_type "
                          f"{config['model_type']!r} (that is {known.get(config['model_type'])!r}); netfix only "
                          "rebuilds the classifiers transformers registers.")
    cls = getattr(transformers, model_class)
    cfg = cls.config_class.from_dict({k: v for k, v in config.items() if k not in _DROPPED})
    if cfg.num_labels != num_classes:
        raise ConfigError(f"config: num_labels {cfg.num_labels} differs from the recorded {num_classes} classes.")
    return cls(cfg)


def describe(model: nn.Module) -> "dict[str, Any] | None":
    """The architecture record of a transformers classifier (None for any other module). transformers is only
    looked at when the program has already imported it."""
    transformers = sys.modules.get("transformers")
    if transformers is None or not isinstance(model, transformers.PreTrainedModel):
        return None
    name = type(model).__name__
    config = model.config.to_dict()
    if _classes().get(config.get("model_type")) != name:
        return None
    return {"name": NAME, "kwargs": {"model_class": name,
                                     "config": {k: v for k, v in config.items() if k not in _DROPPED}}}


def shape_and_classes(model: nn.Module) -> tuple["list[int] | None", int]:
    """What a config tells of the input (images: channels × size × size) and the number of classes."""
    cfg: Any = getattr(model, "config")
    size = getattr(cfg, "image_size", None)
    channels = getattr(cfg, "num_channels", None)
    if isinstance(size, (list, tuple)):
        size = size[0]
    shape = [int(channels), int(size), int(size)] if channels and size else None
    return shape, int(cfg.num_labels)
