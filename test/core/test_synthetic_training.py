"""Training code paths of the synthetic models with tiny step counts, the cache, init-synthetic.

The recipe here trains each model for a handful of steps (seconds), so the models are
meaningless; what is tested is that the real trainers run, save what the run-time loaders
read, are deterministic, and that the cache is reused instead of retraining.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sfs_core.synthetic import cache as cache_module
from sfs_core.synthetic.cache import ensure_models
from sfs_core.synthetic.recipes import ClipRecipe, ClosedSetRecipe, DataRecipe, MaskRecipe, SyntheticRecipe
from sfs_core.synthetic.scenes import SceneConfig

pytestmark = pytest.mark.slow

TINY = SyntheticRecipe(
    data=DataRecipe(train_scenes=6, scene=SceneConfig(sizes=((96, 128),))),
    masks=MaskRecipe(imgsz=64, epochs=1, batch=2),
    closed_set=ClosedSetRecipe(input_size=64, steps=3, batch=2),
    clip=ClipRecipe(image_size=32, steps=3, batch=4, crops_per_object=1),
)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    lines: list[str] = []
    models = ensure_models(TINY, tmp_path_factory.mktemp("synthetic-cache"), log=lines.append)
    return models, lines


def _state(path: Path) -> dict[str, np.ndarray]:
    """Weights of any of the three saved models, as numpy arrays by name."""
    import torch
    from safetensors.torch import load_file

    if path.suffix == ".pt":
        model = torch.load(path, weights_only=False)["model"]
        return {k: v.float().numpy() for k, v in model.state_dict().items()}
    files = sorted(path.glob("*.safetensors"))
    return {k: v.float().numpy() for f in files for k, v in load_file(str(f)).items()}


def test_trains_every_stage_and_reports(tiny_models):
    models, lines = tiny_models
    assert models.trained == ["masks", "closed_set", "clip"]
    assert set(models.paths) == {"masks", "closed_set", "clip"} and all(p.exists() for p in models.paths.values())
    for stage, report in models.reports.items():
        assert report["key"] == models.keys[stage] and report["seconds"] > 0 and report["steps"] >= 1
        assert report["recipe"]["data"]["train_scenes"] == 6
    assert any("training" in line for line in lines) and any("trained" in line for line in lines)


def test_models_load_with_the_run_time_loaders(tiny_models):
    import torch

    from sfs_core.closed_set import ClosedSetSegmenter
    from sfs_core.config import ClosedSetConfig, MaskGeneratorConfig
    from sfs_core.masks import MaskGenerator
    from sfs_core.open_vocab.clip_ranker import ClipRanker
    from sfs_core.synthetic.clip_model import clip_config_values

    models, _ = tiny_models
    image = np.zeros((96, 128, 3), np.uint8)
    masks = MaskGenerator(MaskGeneratorConfig(model=str(models.paths["masks"]), imgsz=64, conf=0.001, backend="torch"))
    assert masks(image).masks.dtype == torch.bool
    segmenter = ClosedSetSegmenter(ClosedSetConfig(name="shapes", model=str(models.paths["closed_set"]), input_size=64, backend="torch"))
    assert segmenter.vocabulary == TINY.data.known_classes
    assert segmenter(image).class_map.shape == (16, 16)
    values = clip_config_values(models.paths["clip"])
    ranker = ClipRanker(values["clip_model"], values["clip_pretrained"])
    assert ranker.input_size == 32
    assert ranker.encode_texts(["star", "ring"]).shape == (2, TINY.clip.embed_dim)


def test_second_call_reuses_the_cache(tiny_models, monkeypatch):
    models, _ = tiny_models
    root = models.paths["masks"].parent.parent

    def no_training(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(cache_module, "_train_stage", no_training)
    lines: list[str] = []
    again = ensure_models(TINY, root, log=lines.append)
    assert again.trained == [] and again.paths == models.paths and again.key == models.key
    assert all("reused" in line for line in lines)


def test_training_is_deterministic(tiny_models, tmp_path):
    models, _ = tiny_models
    second = ensure_models(TINY, tmp_path, log=lambda line: None)
    assert second.trained == ["masks", "closed_set", "clip"]
    for stage in ("masks", "closed_set", "clip"):
        first, again = _state(models.paths[stage]), _state(second.paths[stage])
        assert first.keys() == again.keys()
        assert all(np.array_equal(first[k], again[k]) for k in first), f"{stage} weights differ between identical runs"


def test_init_synthetic_writes_a_working_folder(tiny_models, tmp_path):
    from sfs_core.config import load_config
    from sfs_core.pipeline import Pipeline
    from sfs_core.synthetic.datasets import SyntheticShapes
    from sfs_core.synthetic.init import InitOptions, init_synthetic

    models, _ = tiny_models
    root = models.paths["masks"].parent.parent
    result = init_synthetic(tmp_path / "demo", cache=root, recipe=TINY, options=InitOptions(val_scenes=2, bag_frames=3),
                            log=lambda line: None)
    assert result.models.trained == [] and result.seconds["total"] > 0
    folder = tmp_path / "demo"
    assert {p.name for p in (folder / "models").iterdir()} == {"fastsam-synthetic.pt", "segformer-synthetic", "clip-synthetic"}
    assert len(SyntheticShapes(folder / "val").samples()) == 2
    assert (folder / "synthetic_bag" / "metadata.yaml").exists() and "sfs replay" in (folder / "README.txt").read_text()
    config = load_config(result.config, {"masks.imgsz": 64, "masks.conf": 0.001})
    assert config.offline and config.open_vocab.enabled and config.open_vocab.vocabulary[:2] == ["background", "circle"]
    assert Path(config.masks.model).is_file() and Path(config.closed_set[0].model).is_dir()
    pipeline = Pipeline(config, independent_frames=True)
    try:
        sample = SyntheticShapes(folder / "val").samples()[0]
        result_map = pipeline.process(SyntheticShapes(folder / "val").load_image(sample)).label_map
        assert result_map.shape == (240, 320)
    finally:
        pipeline.close()


def test_cli_dispatches_init_synthetic(monkeypatch, tmp_path):
    from sfs_core import cli
    from sfs_core.synthetic import init as init_module

    calls = {}

    def fake_init(folder, cache=None, options=None, log=print, quiet=True, **kwargs):
        calls.update(folder=folder, cache=cache, options=options, quiet=quiet)
        config = Path(folder) / "sfs.yaml"
        return init_module.InitResult(config=config, models=None, seconds={"total": 0.5})

    monkeypatch.setattr(init_module, "init_synthetic", fake_init)
    code = cli.main(["models", "init-synthetic", str(tmp_path / "d"), "--cache", str(tmp_path / "c"), "--val-scenes", "3"])
    assert code == 0
    assert calls["folder"] == tmp_path / "d" and calls["cache"] == tmp_path / "c"
    assert calls["options"].val_scenes == 3 and calls["quiet"] is True
    assert cli.main(["models", "init-synthetic", str(tmp_path / "d"), "--bag-frames", "0"]) == 2


def test_reports_are_json(tiny_models):
    models, _ = tiny_models
    for stage, path in models.paths.items():
        report = json.loads((path.parent / "report.json").read_text())
        assert report["stage"] == stage
