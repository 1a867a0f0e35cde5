"""A tiny open_clip model as a self-describing folder that stock open_clip loads.

The folder uses open_clip's own ``local-dir:`` format: ``open_clip_config.json`` (``model_cfg``
and ``preprocess_cfg``) next to ``open_clip_model.safetensors``. So no model config has to be
registered anywhere, and the existing loader works unchanged:

* ``open_clip.create_model("local-dir:<folder>")`` builds the architecture from the JSON and loads
  the weights (``pretrained`` is ignored for ``local-dir:`` names);
* ``open_clip.get_tokenizer("local-dir:<folder>")`` gives the matching ``SimpleTokenizer``.

In the sfs YAML this is ``open_vocab.clip_model: local-dir:<absolute folder>`` with
``open_vocab.clip_pretrained: <folder>/open_clip_model.safetensors`` (the file satisfies the
config check that a local ``clip_pretrained`` exists; open_clip itself ignores it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sfs_core.synthetic.recipes import ClipRecipe

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
LOCAL_DIR = "local-dir:"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_model_config(recipe: ClipRecipe) -> dict:
    """open_clip ``model_cfg`` of the recipe: a ResNet or ViT image tower and a causal text
    transformer with open_clip's BPE vocabulary (so ``SimpleTokenizer`` serves it)."""
    if recipe.vision == "resnet":  # open_clip builds a ModifiedResNet when ``layers`` is a list
        vision = {"image_size": recipe.image_size, "layers": list(recipe.resnet_layers), "width": recipe.vision_width,
                  "head_width": recipe.vision_head_width}
    else:
        vision = {"image_size": recipe.image_size, "patch_size": recipe.patch_size, "width": recipe.vision_width,
                  "layers": recipe.vision_layers, "head_width": recipe.vision_head_width, "mlp_ratio": 4.0}
    return {
        "embed_dim": recipe.embed_dim,
        "vision_cfg": vision,
        "text_cfg": {"context_length": recipe.context_length, "vocab_size": 49408, "width": recipe.text_width,
                     "heads": recipe.text_heads, "layers": recipe.text_layers},
    }


def build_clip(recipe: ClipRecipe):
    """An untrained ``open_clip.model.CLIP`` of the recipe (float32, CPU)."""
    from open_clip.model import CLIP

    return CLIP(**clip_model_config(recipe))


def save_clip_folder(model, recipe: ClipRecipe, folder: Path) -> Path:
    """Write ``model`` as an open_clip ``local-dir:`` folder; returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": clip_model_config(recipe),
        "preprocess_cfg": {"size": recipe.image_size, "mean": list(OPENAI_MEAN), "std": list(OPENAI_STD),
                           "interpolation": "bilinear", "resize_mode": "squash"},
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    return folder


def clip_model_name(folder: str | os.PathLike) -> str:
    """The ``open_vocab.clip_model`` value for ``folder``: ``local-dir:<absolute folder>``."""
    return LOCAL_DIR + str(Path(folder).expanduser().resolve())


def clip_config_values(folder: str | os.PathLike) -> dict[str, str]:
    """``{"clip_model": ..., "clip_pretrained": ...}`` for the ``open_vocab`` section."""
    folder = Path(folder).expanduser().resolve()
    return {"clip_model": clip_model_name(folder), "clip_pretrained": str(folder / WEIGHTS_FILE)}


def load_clip_folder(folder: str | os.PathLike, device: str = "cpu"):
    """``(model, tokenizer)`` from a folder written by :func:`save_clip_folder`, through stock
    open_clip (exactly what :class:`~sfs_core.open_vocab.clip_ranker.ClipRanker` does with the
    values of :func:`clip_config_values`)."""
    import open_clip

    name = clip_model_name(folder)
    model = open_clip.create_model(name, device=device, require_pretrained=True)
    return model.eval(), open_clip.get_tokenizer(name)
