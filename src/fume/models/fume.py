"""FUME-FastSCNN: a shared Fast-SCNN encoder for the CO2 and CH4 frames, attention fusion of the
two gases, a segmentation decoder per gas and a health classifier. Every ablation of the paper
and the seed is a configuration of this one class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fume.contract import CLS_OUTPUT, ENCODERS, FUSIONS, GASES, MODALITIES, SEG_OUTPUTS, TASKS
from fume.errors import ConfigError
from fume.models.base import DualGasModel
from fume.models.blocks import ChannelAttention, ClassificationHead, ContextBranch, CrossModalAttention, DSConv, SelfAttention
from fume.models.fastscnn import HIGH_CHANNELS, FastSCNNEncoder, SegmentationDecoder
from fume.models.inputs import mask_features, mask_frames, present_only
from fume.models.registry import Reference, register_model

# What each fusion (fume.contract.FUSIONS names them) is made of:
# (self-attention per gas, cross-modal attention, how streams combine, channel attention)
FUSION_PARTS: dict[str, tuple[bool, bool, str, bool]] = {
    "concat": (False, False, "concat", False),
    "add": (False, False, "add", False),
    "self_attention": (True, False, "concat", False),
    "cross_attention": (False, True, "concat", False),
    "self_channel": (True, False, "concat", True),
    "full_cross": (True, True, "concat", True),
}

FUME_NOTE = (
    "Paper: 1.28 M parameters, 1.97 GMACs at 640x480. The fusion's 3x3 conv is depthwise-separable "
    "(a full 3x3 256->128 conv alone has 295 k parameters, more than the published total leaves "
    "beside a Fast-SCNN encoder), and the decoders' shared context branch runs once at H/32."
)


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"model option {key}={value!r} is not one of {', '.join(map(repr, allowed))}")
    return value


def modality_gases(modalities: str) -> tuple[str, ...]:
    """The gases a model built for `modalities` reads: 'dual' both, otherwise the one named."""
    return GASES if _choice("modalities", modalities, MODALITIES) == "dual" else (modalities,)


class GasFusion(nn.Module):
    """Fuse the high features (128 x H/32) of the gas streams into one 128-channel context.

    Self-attention per gas (modality-specific weights) -> absent gases zeroed -> optional
    cross-modal attention (each stream attends to the other) -> concat or add -> optional
    channel attention (squeeze-excitation) -> depthwise-separable 3x3 conv + BN + ReLU -> 128.
    """

    def __init__(self, num_streams: int, fusion: str) -> None:
        super().__init__()
        self_attention, cross_attention, combine, channel_attention = FUSION_PARTS[fusion]
        self.combine = combine
        channels = HIGH_CHANNELS
        self.self_attention = (
            nn.ModuleList(SelfAttention(channels) for _ in range(num_streams)) if self_attention else None
        )
        if cross_attention and num_streams != 2:
            raise ConfigError(f"fusion={fusion!r} (cross-modal attention) needs both gases: modalities='dual'")
        self.cross_attention = nn.ModuleList(CrossModalAttention(channels) for _ in range(2)) if cross_attention else None
        in_channels = channels * num_streams if combine == "concat" else channels
        self.channel_attention = ChannelAttention(in_channels, reduction=16) if channel_attention else None
        self.project = DSConv(in_channels, channels)

    def forward(self, streams: list[torch.Tensor], present: list[torch.Tensor]) -> torch.Tensor:
        if self.self_attention is not None:
            streams = [attn(s) for attn, s in zip(self.self_attention, streams)]
        streams = [mask_features(s, p) for s, p in zip(streams, present)]
        if self.cross_attention is not None:
            a, b = streams
            streams = [
                mask_features(self.cross_attention[0](a, b, present[1]), present[0]),
                mask_features(self.cross_attention[1](b, a, present[0]), present[1]),
            ]
        fused = torch.cat(streams, dim=1) if self.combine == "concat" else torch.stack(streams).sum(0)
        if self.channel_attention is not None:
            fused = self.channel_attention(fused)
        return self.project(fused)


@register_model(
    "fume",
    "FUME-FastSCNN: shared encoder, self-attention + channel-attention fusion, seg + cls (default)",
    reference=Reference(1.28e6, "FUME paper"),
    note=FUME_NOTE,
)
class FUME(DualGasModel):
    """FUME-FastSCNN and its ablations.

    forward(co2 (B,1,H,W), ch4 (B,1,H,W), modality_mask (B,2) = [co2 present, ch4 present])
    -> dict with cls_logits (B, num_classes) unless tasks="seg", and {gas}_seg_logits
    (B, num_seg_classes, H, W) for each gas used unless tasks="cls". H and W: multiples of 32.
    """

    def __init__(
        self,
        encoder: str = "shared",
        fusion: str = "self_channel",
        tasks: str = "seg_cls",
        modalities: str = "dual",
        num_classes: int = 3,
        num_seg_classes: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        _choice("encoder", encoder, ENCODERS)
        _choice("fusion", fusion, FUSIONS)
        _choice("tasks", tasks, TASKS)
        self.gases = modality_gases(modalities)
        self.num_seg_classes = num_seg_classes
        self.shared_encoder = encoder == "shared" or len(self.gases) == 1
        if self.shared_encoder:
            self.encoder = FastSCNNEncoder(1, se=True)
        else:
            self.encoders = nn.ModuleDict({gas: FastSCNNEncoder(1, se=True) for gas in self.gases})
        self.fusion = GasFusion(len(self.gases), fusion)
        # The fused context is brought to H/8 once and shared by both gases' decoders.
        self.context = ContextBranch(HIGH_CHANNELS, HIGH_CHANNELS, upsample_first=False) if tasks != "cls" else None
        self.decoders = (
            nn.ModuleDict({gas: SegmentationDecoder(num_seg_classes, dropout, attention=True) for gas in self.gases})
            if tasks in ("seg_cls", "seg")
            else None
        )
        self.classifier = ClassificationHead(HIGH_CHANNELS, num_classes, 64, dropout) if tasks in ("seg_cls", "cls") else None

    @classmethod
    def declare_outputs(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """cls_logits unless tasks='seg', then a segmentation per gas read unless tasks='cls'."""
        tasks = _choice("tasks", options["tasks"], TASKS)
        gases = modality_gases(options["modalities"])
        classifies = (CLS_OUTPUT,) if tasks in ("seg_cls", "cls") else ()
        segments = tuple(SEG_OUTPUTS[gas] for gas in gases) if tasks in ("seg_cls", "seg") else ()
        return classifies + segments

    def encode(self, frames: list[torch.Tensor], present: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(low, high) features per gas of the raw frames. While training a shared encoder runs once
        on the gases stacked in the batch (batch statistics over both gases), absent frames left
        out (inputs.present_only). At inference each gas has its own pass (the running statistics
        make it the same computation): no concatenation of the frames and no slicing of the
        features, which ONNX Runtime copied between layouts (measured about 10 % faster at 640x480)."""
        if self.shared_encoder and self.training:
            both = mask_frames(torch.cat(frames), torch.cat(present))
            low, high = present_only(self.training, self.encoder, torch.cat(present), both)
            n = len(frames)
            return list(low.chunk(n)), list(high.chunk(n))
        encoders = [self.encoder if self.shared_encoder else self.encoders[gas] for gas in self.gases]
        pairs = [present_only(self.training, enc, p, mask_frames(x, p)) for enc, x, p in zip(encoders, frames, present)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def compute(self, co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        inputs = {"co2": (co2, modality_mask[:, 0]), "ch4": (ch4, modality_mask[:, 1])}
        present = [inputs[gas][1] for gas in self.gases]
        lows, highs = self.encode([inputs[gas][0] for gas in self.gases], present)
        fused = self.fusion(highs, present)

        outputs: dict[str, torch.Tensor] = {}
        if self.classifier is not None:
            outputs[CLS_OUTPUT] = self.classifier(fused)
        if self.decoders is not None and self.context is not None:
            size = co2.shape[-2:]
            context = self.context(fused, lows[0].shape[-2:])
            for gas, low, p in zip(self.gases, lows, present):
                decoder = self.decoders[gas]
                outputs[SEG_OUTPUTS[gas]] = present_only(
                    self.training, lambda lo, ctx, d=decoder: d(lo, ctx, size), p, low, context,
                    empty=lambda: co2.new_zeros((co2.shape[0], self.num_seg_classes, *size)),
                )
        return outputs
