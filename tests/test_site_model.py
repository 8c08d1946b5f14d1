"""The site's model by default: where the site has photos, the photos or the FER2013 champion by
their camera-path figures on the same people (angry F1); else the FER2013 champion; said with
the reason and a warning when the model chosen is weak there; a named model always wins."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from emowatch.config import resolve_path
from emowatch.deploy import site_model
from emowatch.evaluation.paired import wilson
from tests.conftest import make_people_photos


def champion(
    client: MlflowClient, name: str, model: str, caught: int, n: int, said: int | None = None
) -> None:
    """A champion whose tags carry camera-path figures as `register` writes them."""
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    said = caught * 2 if said is None else said
    tags = {
        "model": model,
        "deployed_decide_angry_caught": str(caught),
        "deployed_decide_n_angry": str(n),
        "deployed_decide_recall_angry": str(caught / n),
        "deployed_decide_recall_angry_low": str(wilson(caught, n)[0]),
        "deployed_decide_precision_angry": str(caught / said if said else 0.0),
    }
    v = client.create_model_version(name, "/nowhere", tags=tags)
    client.set_registered_model_alias(name, "champion", v.version)


@pytest.fixture
def registry(make_cfg, tracking_uri):
    cfg = make_cfg()
    return cfg, MlflowClient(tracking_uri)


def test_fer2013_champion_without_photos_then_photos_champion_with_them(registry, tmp_path, capsys):
    cfg, client = registry
    none_yet = site_model.choose(cfg)
    assert none_yet.uri == "models:/emowatch-fer2013@champion" and "no champion" in none_yet.reason
    champion(client, "emowatch-fer2013", "vgg", 0, 24)
    plain = site_model.choose(cfg)
    assert plain.uri == "models:/emowatch-fer2013@champion"
    assert "no photos of this site's people" in plain.reason and "caught 0 of 24" in plain.reason
    assert "weak on this site's people" in plain.warning  # 0 of 24: far below the floor

    make_people_photos(tmp_path / "data", resolve_path(cfg.data.photos.splits))
    waiting = site_model.choose(cfg)  # photos, but nothing trained on them yet
    assert waiting.uri == "models:/emowatch-fer2013@champion"
    assert "16 photos but no photos champion yet" in waiting.reason

    champion(client, "emowatch-photos", "cnn1", 22, 24)
    site = site_model.choose(cfg)
    assert site.uri == "models:/emowatch-photos@champion"
    assert "16 photos of its people" in site.reason and "the photos champion: an angry F1" in (
        site.reason
    )
    assert "v1 cnn1: caught 22 of 24" in site.reason and "v1 vgg: caught 0 of 24" in site.reason
    assert site.warning is None  # 22 of 24: the lower bound (0.74) reaches the floor 0.5

    assert site_model.resolve(cfg) == "models:/emowatch-photos@champion"
    assert "model: models:/emowatch-photos@champion" in capsys.readouterr().err  # said, with why

    # Like with like: a FER2013 champion that does better on the same people is the site's.
    champion(client, "emowatch-fer2013", "vgg", 14, 24, said=20)
    champion(client, "emowatch-photos", "cnn1", 4, 24, said=16)
    better = site_model.choose(cfg)
    assert better.uri == "models:/emowatch-fer2013@champion"
    assert "the FER2013 champion: a higher angry F1" in better.reason
    assert "weak on this site's people" in better.warning  # 14 of 24: lower bound 0.39
    site_model.resolve(cfg)
    assert "warning: the site's model is weak" in capsys.readouterr().err
    named = "models:/emowatch-fer2013/1"
    assert site_model.resolve(cfg, named) == named  # --model wins
