"""The seed's five baselines, built from the same Fast-SCNN parts as FUME (SE encoder, context
branch, decoder, classification head) and returning the same output dict."""

from __future__ import annotations

import torch
from torch import nn

from fume.contract import CLS_OUTPUT, GASES, OUTPUT_NAMES, SEG_OUTPUTS
from fume.models.base import DualGasModel
from fume.models.blocks import ClassificationHead, ContextBranch
from fume.models.fastscnn import HIGH_CHANNELS, FastSCNNEncoder, SegmentationDecoder
from fume.models.inputs import mask_frames, masked_mean, present_only, stacked_frames, stacked_presence
from fume.models.registry import Reference, register_model

SEED = "seed"  # the baselines' published figures come from the seed project

EARLY_FUSION_NOTE = (
    "The seed's 2.6 M cannot come from its own description: a 2-channel Fast-SCNN encoder has only "
    "288 more weights than the 1-channel one, so one encoder, two decoders and a head give ~1.2 M "
    "(2.6 M would need two encoders or a ~1.5x wider network, which is not early fusion as described)."
)


@register_model(
    "segmentation_only",
    "Shared SE Fast-SCNN encoder, a decoder per gas, no gas fusion, no classification",
    reference=Reference(1.3e6, SEED),
)
class SegmentationOnly(DualGasModel):
    """Each gas segmented from its own features (no cross-gas context); no classification."""

    OUTPUTS = tuple(SEG_OUTPUTS[gas] for gas in GASES)

    def __init__(self, num_seg_classes: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.num_seg_classes = num_seg_classes
        self.encoder = FastSCNNEncoder(1, se=True)
        self.context = ContextBranch(HIGH_CHANNELS, HIGH_CHANNELS, upsample_first=False)
        self.decoders = nn.ModuleDict({gas: SegmentationDecoder(num_seg_classes, dropout, attention=True) for gas in GASES})

    def compute(self, co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        size = co2.shape[-2:]

        def features(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            low, high = self.encoder(frames)
            return low, self.context(high, low.shape[-2:])

        low, context = present_only(self.training, features, stacked_presence(modality_mask), stacked_frames(co2, ch4, modality_mask))
        return {
            SEG_OUTPUTS[gas]: present_only(
                self.training, lambda lo, ctx, d=self.decoders[gas]: d(lo, ctx, size), modality_mask[:, g], gas_low, gas_context,
                empty=lambda: co2.new_zeros((co2.shape[0], self.num_seg_classes, *size)),
            )
            for g, (gas, gas_low, gas_context) in enumerate(zip(GASES, low.chunk(2), context.chunk(2)))
        }


@register_model(
    "classification_only",
    "Shared SE Fast-SCNN encoder, pooled features of both gases concatenated -> MLP",
    reference=Reference(1.2e6, SEED),
)
class ClassificationOnly(DualGasModel):
    """Late fusion for classification only: GAP of each gas's high features (zeros when absent),
    concatenated (256) -> MLP 256 -> 64 -> classes."""

    OUTPUTS = (CLS_OUTPUT,)

    def __init__(self, num_classes: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = FastSCNNEncoder(1, se=True)
        self.classifier = ClassificationHead(2 * HIGH_CHANNELS, num_classes, 64, dropout)

    def compute(self, co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        _, high = present_only(self.training, self.encoder, stacked_presence(modality_mask), stacked_frames(co2, ch4, modality_mask))
        pooled = high.mean(dim=(2, 3)).unflatten(0, (2, -1))  # (2, B, C)
        pooled = pooled * modality_mask.t().unsqueeze(-1).to(pooled.dtype)
        return {CLS_OUTPUT: self.classifier(torch.cat([pooled[0], pooled[1]], dim=1))}


@register_model(
    "gas_aware_classifier",
    "One stream classifying each gas told which gas it sees; mean over present gases",
    reference=Reference(1.25e6, SEED),
)
class GasAwareClassifier(DualGasModel):
    """A single stream sees one gas at a time; a learned gas embedding is added to its pooled
    features so the classifier knows which gas it looks at. Pair logits: mean over present gases."""

    OUTPUTS = (CLS_OUTPUT,)

    def __init__(self, num_classes: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = FastSCNNEncoder(1, se=True)
        self.gas_embedding = nn.Parameter(torch.zeros(len(GASES), HIGH_CHANNELS))
        self.classifier = ClassificationHead(HIGH_CHANNELS, num_classes, 64, dropout)

    def compute(self, co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        _, high = present_only(self.training, self.encoder, stacked_presence(modality_mask), stacked_frames(co2, ch4, modality_mask))
        pooled = high.mean(dim=(2, 3)).unflatten(0, (2, -1)) + self.gas_embedding.unsqueeze(1)  # (2, B, C)
        return {CLS_OUTPUT: masked_mean(self.classifier(pooled), modality_mask)}


@register_model(
    "early_fusion",
    "CO2 and CH4 as two input channels of one SE Fast-SCNN; two seg heads, one cls head",
    reference=Reference(2.6e6, SEED),
    note=EARLY_FUSION_NOTE,
)
class EarlyFusion(DualGasModel):
    """Early fusion: the two frames are the two channels of one input (an absent gas's channel
    is zeros). One encoder and context; a decoder per gas; one classification head."""

    OUTPUTS = OUTPUT_NAMES

    def __init__(self, num_classes: int = 3, num_seg_classes: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = FastSCNNEncoder(2, se=True)
        self.context = ContextBranch(HIGH_CHANNELS, HIGH_CHANNELS, upsample_first=False)
        self.decoders = nn.ModuleDict({gas: SegmentationDecoder(num_seg_classes, dropout, attention=True) for gas in GASES})
        self.classifier = ClassificationHead(HIGH_CHANNELS, num_classes, 64, dropout)

    def compute(self, co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.cat([mask_frames(co2, modality_mask[:, 0]), mask_frames(ch4, modality_mask[:, 1])], dim=1)
        low, high = self.encoder(x)
        context = self.context(high, low.shape[-2:])
        size = co2.shape[-2:]
        outputs = {CLS_OUTPUT: self.classifier(high)}
        for gas in GASES:
            outputs[SEG_OUTPUTS[gas]] = self.decoders[gas](low, context, size)
        return outputs


@register_model(
    "multitask_single_stream",
    "One stream (encoder, decoder, cls head) applied to each gas; mean of cls over gases",
    reference=Reference(1.4e6, SEED),
)
class MultiTaskSingleStream(DualGasModel):
    """Multi-task without fusion: the same network segments and classifies each gas on its own
    (one decoder for both gases); pair logits are the mean over present gases."""

    OUTPUTS = OUTPUT_NAMES

    def __init__(self, num_classes: int = 3, num_seg_classes: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = FastSCNNEncoder(1, se=True)
        self.context = ContextBranch(HIGH_CHANNELS, HIGH_CHANNELS, upsample_first=False)
        self.decoder = SegmentationDecoder(num_seg_classes, dropout, attention=True)
        self.classifier = ClassificationHead(HIGH_CHANNELS, num_classes, 64, dropout)

    def compute(self, co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        def per_frame(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            low, high = self.encoder(frames)
            return self.decoder(low, self.context(high, low.shape[-2:]), co2.shape[-2:]), self.classifier(high)

        seg, cls = present_only(self.training, per_frame, stacked_presence(modality_mask), stacked_frames(co2, ch4, modality_mask))
        cls = cls.unflatten(0, (2, -1))  # (2, B, classes)
        co2_seg, ch4_seg = seg.chunk(2)
        return {CLS_OUTPUT: masked_mean(cls, modality_mask), SEG_OUTPUTS["co2"]: co2_seg, SEG_OUTPUTS["ch4"]: ch4_seg}
