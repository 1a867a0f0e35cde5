"""The straightforward reference path (the seed implementation's approach), for comparison only.

ultralytics ``predict(retina_masks=True)`` upsamples every mask to full resolution; the closed-set
logits are upsampled bilinearly before the argmax; then a Python loop votes and paints mask by
mask at full resolution. Not used by the library.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class ReferencePath:
    def __init__(self, fastsam_path: str, segformer_path: str, imgsz: int, conf: float, iou: float, max_masks: int):
        from transformers import SegformerForSemanticSegmentation
        from ultralytics import FastSAM

        self.fastsam = FastSAM(fastsam_path)
        self.segformer = SegformerForSemanticSegmentation.from_pretrained(segformer_path).eval()
        self.args = dict(imgsz=imgsz, conf=conf, iou=iou, max_det=max_masks, retina_masks=True, verbose=False, device="cpu")
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    @torch.inference_mode()
    def process(self, rgb: np.ndarray, min_confidence: float = 0.05) -> np.ndarray:
        h, w = rgb.shape[:2]
        result = self.fastsam.predict(rgb[..., ::-1].copy(), **self.args)[0]
        masks = result.masks.data.bool() if result.masks is not None else torch.zeros(0, h, w, dtype=torch.bool)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        x = F.interpolate(x, size=(512, 512), mode="bilinear", align_corners=False)
        logits = self.segformer(pixel_values=(x - self.mean) / self.std).logits
        class_map = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[0].argmax(0)
        labels, confidences = [], []
        for mask in masks:  # per-mask vote at full resolution
            votes = torch.bincount(class_map[mask], minlength=logits.shape[1])
            area = int(mask.sum())
            labels.append(int(votes.argmax()))
            confidences.append(float(votes.max()) / area if area else 0.0)
        label_map = class_map.clone()
        for index in np.argsort(confidences):  # paint, most confident last (on top)
            label_map[masks[index]] = labels[index] if confidences[index] >= min_confidence else 1
        return label_map.numpy().astype(np.uint16)
