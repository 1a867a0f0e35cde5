"""BLIP captions of mask crops, in batches, through transformers."""

from __future__ import annotations

import os

import torch

from sfs_core.open_vocab.crops import normalize


class BlipCaptioner:
    """``BlipForConditionalGeneration`` with greedy decoding.

    Args:
        model: hub id (``Salesforce/blip-image-captioning-large``) or a local folder holding the
            model and its processor (``save_pretrained``).
        device: torch device; float16 on CUDA, float32 otherwise.
        max_new_tokens: caption length limit.

    >>> captioner = BlipCaptioner("Salesforce/blip-image-captioning-base")  # doctest: +SKIP
    >>> captioner.caption(crops)  # (N, 3, 384, 384) float32 in [0, 255]  # doctest: +SKIP
    ['a dog sitting on a couch', ...]
    """

    def __init__(self, model: str, device: str | torch.device = "cpu", max_new_tokens: int = 20) -> None:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.device = torch.device(device)
        self.max_new_tokens = max_new_tokens
        source = os.path.expanduser(model)
        self.processor = BlipProcessor.from_pretrained(source)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = BlipForConditionalGeneration.from_pretrained(source, dtype=self.dtype).to(self.device).eval()
        images = self.processor.image_processor
        size = images.size  # a dict, or transformers' SizeDict
        self.input_size = int(size["height"] if isinstance(size, dict) else size.height)
        self.mean = torch.tensor(images.image_mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(images.image_std, dtype=torch.float32, device=self.device)

    @torch.inference_mode()
    def caption(self, crops: torch.Tensor) -> list[str]:
        """One caption per crop. ``crops``: ``(N, 3, S, S)`` float32 RGB in ``[0, 255]`` with
        ``S = input_size``; all of them go through one ``generate`` call."""
        if crops.shape[0] == 0:
            return []
        pixels = normalize(crops.to(self.device, torch.float32), self.mean, self.std).to(self.dtype)
        tokens = self.model.generate(pixel_values=pixels, max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False)
        return [text.strip() for text in self.processor.batch_decode(tokens, skip_special_tokens=True)]
