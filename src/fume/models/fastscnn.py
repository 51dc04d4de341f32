"""Fast-SCNN (Poudel et al., 2019) for 1-channel gas frames: the encoder every FUME model uses,
and the plain 2019 segmentation model as a reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fume.contract import SEG_OUTPUTS
from fume.models.base import DualGasModel
from fume.models.blocks import ContextBranch, ConvBNReLU, DSConv, FeatureFusion, InvertedResidual, PyramidPooling, SegmentationHead
from fume.models.inputs import present_only, stacked_frames, stacked_presence
from fume.models.registry import Reference, register_model

LOW_CHANNELS = 64  # learning-to-downsample output, H/8
HIGH_CHANNELS = 128  # global feature extractor output, H/32


class LearningToDownsample(nn.Sequential):
    """conv 3x3 s2 (32) -> DSConv s2 (48) -> DSConv s2 (64): H/8."""

    def __init__(self, in_channels: int = 1, se: bool = False) -> None:
        super().__init__(
            ConvBNReLU(in_channels, 32, 3, stride=2),
            DSConv(32, 48, stride=2, se=se),
            DSConv(48, LOW_CHANNELS, stride=2, se=se),
        )


class GlobalFeatureExtractor(nn.Sequential):
    """3 stages x 3 inverted residuals (expansion 6; 64 ch s2, 96 ch s2, 128 ch s1) + pyramid pooling."""

    STAGES = ((64, 2), (96, 2), (128, 1))  # (channels, stride of the first block)

    def __init__(self, se: bool = False, blocks_per_stage: int = 3, expansion: int = 6) -> None:
        layers: list[nn.Module] = []
        channels = LOW_CHANNELS
        for out_channels, stride in self.STAGES:
            for i in range(blocks_per_stage):
                layers.append(InvertedResidual(channels, out_channels, stride if i == 0 else 1, expansion, se=se))
                channels = out_channels
        layers.append(PyramidPooling(channels, HIGH_CHANNELS))
        super().__init__(*layers)


class FastSCNNEncoder(nn.Module):
    """Returns (low 64 x H/8, high 128 x H/32) features. `se` adds squeeze-excitation to the
    downsampling DSConvs and the bottlenecks (FUME); without it this is the 2019 encoder."""

    def __init__(self, in_channels: int = 1, se: bool = False) -> None:
        super().__init__()
        self.downsample = LearningToDownsample(in_channels, se=se)
        self.global_features = GlobalFeatureExtractor(se=se)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.downsample(x)
        return low, self.global_features(low)


class SegmentationDecoder(nn.Module):
    """One gas's decoder: feature fusion of its low features (64 x H/8) with a context already at
    H/8 (see ContextBranch), the Fast-SCNN classifier, logits upsampled to the input size."""

    def __init__(self, num_classes: int, dropout: float = 0.1, attention: bool = False) -> None:
        super().__init__()
        self.fusion = FeatureFusion(LOW_CHANNELS, HIGH_CHANNELS, attention=attention)
        self.head = SegmentationHead(HIGH_CHANNELS, num_classes, dropout)

    def forward(self, low: torch.Tensor, context: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        logits = self.head(self.fusion(low, context))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@register_model(
    "fastscnn",
    "Plain 2019 Fast-SCNN segmenting each gas separately (reference; no classification)",
    reference=Reference(1.11e6, "Fast-SCNN paper (19 classes, RGB)"),
)
class FastSCNN(DualGasModel):
    """The plain 2019 Fast-SCNN segmenting each gas on its own (one network, both gases stacked
    in the batch). Returns co2_seg_logits and ch4_seg_logits; no classification."""

    OUTPUTS = (SEG_OUTPUTS["co2"], SEG_OUTPUTS["ch4"])

    def __init__(self, num_seg_classes: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = FastSCNNEncoder(1, se=False)
        self.context = ContextBranch(HIGH_CHANNELS, HIGH_CHANNELS, upsample_first=True)
        self.decoder = SegmentationDecoder(num_seg_classes, dropout)

    def compute(self, co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, size = co2.shape[0], co2.shape[-2:]

        def segment(frames: torch.Tensor) -> torch.Tensor:
            low, high = self.encoder(frames)
            return self.decoder(low, self.context(high, low.shape[-2:]), size)

        logits = present_only(self.training, segment, stacked_presence(modality_mask), stacked_frames(co2, ch4, modality_mask))
        return {SEG_OUTPUTS["co2"]: logits[:batch], SEG_OUTPUTS["ch4"]: logits[batch:]}
