"""FUME models: a registry of FUME-FastSCNN, its ablations and the baselines.

    model = create_model("fume", fusion="full_cross")
    outputs = model(co2, ch4, modality_mask)  # dict: cls_logits, co2_seg_logits, ch4_seg_logits
    model.options, model.output_names  # what it was built with, what forward returns
    model, config = load_pretrained("DIR")  # a folder written by `fume publish`
"""

# Importing the model modules registers their models (the registry itself imports none of them).
from fume.models import baselines, fastscnn, fume  # noqa: F401
from fume.models.base import DualGasModel
from fume.models.pretrained import load_pretrained
from fume.models.registry import create_model, list_models, model_options, output_names

__all__ = ["DualGasModel", "create_model", "list_models", "load_pretrained", "model_options", "output_names"]
