"""A published model folder (`fume publish`), the way the field shares models:

    DIR/model.safetensors   the network's weights (safetensors: tensors only, no code, no pickle)
    DIR/config.yaml         the configuration it was trained with (model, frame size, class names)
    DIR/README.md           the model card (Hugging Face format)
    DIR/model.onnx          the same network for ONNX Runtime (and model.int8.onnx when asked)

    model, config = fume.models.load_pretrained("DIR")
"""

from __future__ import annotations

from pathlib import Path

import torch

from fume.config import FumeConfig, load_config
from fume.errors import FumeError
from fume.models.checkpoint import build_model, load_weights

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
CARD_FILE = "README.md"
ONNX_FILE = "model.onnx"


def save_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """The model's state dict as safetensors, written atomically (fume.io)."""
    from safetensors.torch import save_file

    from fume.io import write_with

    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}  # no shared storage
    return write_with(path, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))


def load_pretrained(folder: str | Path, map_location: str = "cpu") -> tuple[torch.nn.Module, FumeConfig]:
    """The network (eval mode) and its configuration from a folder written by `fume publish`.
    A missing or broken file is one FumeError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    for path in (weights, config_path):
        if not path.is_file():
            raise FumeError(f"{path} not found; a published model folder (fume publish) holds {WEIGHTS_FILE} and {CONFIG_FILE}")
    config = load_config(config_path)
    try:
        state = load_file(str(weights), device=map_location)
    except (SafetensorError, OSError, ValueError) as err:
        raise FumeError(f"cannot read {weights}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    model = build_model(config.model)
    load_weights(model, state, str(weights), config.model.name)
    return model.eval(), config
