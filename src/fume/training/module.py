"""The LightningModule: the task (model, multi-task loss, validation metrics, optimiser)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from fume.config import FumeConfig, validate_config
from fume.contract import CLS_OUTPUT, GASES, SEG_OUTPUTS
from fume.errors import FumeError
from fume.models.checkpoint import build_model


class NonFiniteLossError(FumeError):
    """The training loss became NaN or infinite."""


def build_multitask_loss(config: FumeConfig) -> torch.nn.Module:
    from fume.training.losses import MultiTaskLoss, build_loss

    loss = config.training.loss
    seg = build_loss(loss.seg_loss, class_weights=loss.seg_class_weights, gamma=loss.gamma)
    cls = build_loss(loss.cls_loss, class_weights=loss.cls_alpha, gamma=loss.gamma)
    return MultiTaskLoss(seg, cls, lambda_seg=loss.lambda_seg, lambda_cls=loss.lambda_cls)


def present_seg_predictions(outputs: dict[str, torch.Tensor], batch: dict[str, Any]):
    """(gas, predicted labels, target labels) for the samples whose gas is present."""
    for g, gas in enumerate(GASES):
        key = SEG_OUTPUTS[gas]
        if key not in outputs:
            continue
        present = batch["modality_mask"][:, g] > 0.5
        if present.any():
            yield gas, outputs[key][present].argmax(1), batch[f"{gas}_mask"][present]


class FumeTask(L.LightningModule):
    """Holds the network under `self.model`; the resolved config is saved as hyper_parameters["config"]."""

    def __init__(self, config: dict[str, Any] | FumeConfig) -> None:
        super().__init__()
        cfg = config if isinstance(config, FumeConfig) else validate_config(config, "checkpoint config")
        self.save_hyperparameters({"config": cfg.to_dict()})
        self.cfg = cfg
        self.model = build_model(cfg.model)
        self.criterion = build_multitask_loss(cfg)
        from fume.evaluation.metrics import ClassificationMetrics, SegmentationMetrics

        labels = cfg.data.labels
        self.val_seg = SegmentationMetrics(num_classes=3)
        self.val_cls = ClassificationMetrics(num_classes=labels.num_classes, class_names=list(labels.class_names))
        self.last_val_metrics: dict[str, Any] = {}
        self._seen_seg = False
        self._seen_cls = False

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model(batch["co2_frame"], batch["ch4_frame"], batch["modality_mask"])

    def _log_losses(self, stage: str, losses: dict[str, torch.Tensor], batch_size: int) -> None:
        on_step = stage == "train"
        for name in ("loss", "seg_loss", "cls_loss"):
            if name in losses:
                self.log(
                    f"{stage}_{name}", losses[name].detach(), on_step=on_step, on_epoch=True,
                    prog_bar=name == "loss", batch_size=batch_size, sync_dist=not on_step,
                )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.criterion(self(batch), batch)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at global step {self.global_step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}); the run stopped and the last good checkpoint was kept. Lower "
                f"training.optimizer.lr or check the data, then continue with --resume"
            )
        self._log_losses("train", losses, batch["class_label"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        outputs = self(batch)
        self._log_losses("val", self.criterion(outputs, batch), batch["class_label"].shape[0])
        for gas, pred, target in present_seg_predictions(outputs, batch):
            self.val_seg.update(pred, target, gas)
            self._seen_seg = True
        if CLS_OUTPUT in outputs:
            self.val_cls.update(outputs[CLS_OUTPUT].float(), batch["class_label"])
            self._seen_cls = True

    def on_validation_epoch_end(self) -> None:
        from fume.evaluation.metrics import joint_score

        metrics: dict[str, Any] = {}
        if self._seen_seg:
            metrics.update(self.val_seg.compute())
        if self._seen_cls:
            metrics.update(self.val_cls.compute())
        if "miou" in metrics and "balanced_accuracy" in metrics:
            metrics["joint_score"] = float(joint_score(metrics["miou"], metrics["balanced_accuracy"]))
        self.val_seg.reset()
        self.val_cls.reset()
        self._seen_seg = self._seen_cls = False
        scalars = {k: float(v) for k, v in metrics.items() if _is_scalar(v)}
        loss = self.trainer.callback_metrics.get("val_loss")
        self.last_val_metrics = {**({"loss": float(loss)} if loss is not None else {}), **scalars}
        if "confusion_matrix" in metrics:
            self.last_val_metrics["confusion_matrix"] = metrics["confusion_matrix"]
        # Already synchronised across processes by the torchmetrics states.
        self.log_dict({f"val_{k}": v for k, v in scalars.items() if math.isfinite(v)}, sync_dist=False)

    def configure_optimizers(self) -> dict[str, Any]:
        opt = self.cfg.training.optimizer
        optimizer = torch.optim.AdamW(self.parameters(), lr=opt.lr, weight_decay=opt.weight_decay, betas=tuple(opt.betas))
        sched = self.cfg.training.scheduler
        if sched.name == "none":
            return {"optimizer": optimizer}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, int(round(sched.warmup_epochs * total / self.cfg.training.num_epochs)))
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=sched.eta_min)
        if warmup > 0:
            ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup)
            scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])
        else:
            scheduler = cosine
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _is_scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)
