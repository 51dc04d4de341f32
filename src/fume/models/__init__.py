"""FUME models: a registry of FUME-FastSCNN, its ablations and the baselines.

    model = create_model("fume", fusion="full_cross")
    outputs = model(co2, ch4, modality_mask)  # dict: cls_logits, co2_seg_logits, ch4_seg_logits
"""

from fume.models.registry import create_model, list_models, model_options

__all__ = ["create_model", "list_models", "model_options"]
