"""The site's model by default: the photos champion where the site has photos, else the FER2013
champion, said with the reason; a named model always wins."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from emowatch.config import resolve_path
from emowatch.deploy import site_model
from tests.conftest import make_people_photos


def champion(client: MlflowClient, name: str, model: str, caught: int, n: int) -> None:
    client.create_registered_model(name)
    tags = {"model": model, "deployed_decide_angry_caught": str(caught)}
    v = client.create_model_version(
        name, "/nowhere", tags=tags | {"deployed_decide_n_angry": str(n)}
    )
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

    make_people_photos(tmp_path / "data", resolve_path(cfg.data.photos.splits))
    waiting = site_model.choose(cfg)  # photos, but nothing trained on them yet
    assert waiting.uri == "models:/emowatch-fer2013@champion"
    assert "16 photos but no photos champion yet" in waiting.reason

    champion(client, "emowatch-photos", "cnn1", 5, 6)
    site = site_model.choose(cfg)
    assert site.uri == "models:/emowatch-photos@champion"
    assert "16 photos of its people" in site.reason
    assert "v1 cnn1: caught 5 of 6" in site.reason and "v1 vgg: caught 0 of 24" in site.reason

    assert site_model.resolve(cfg) == "models:/emowatch-photos@champion"
    assert "model: models:/emowatch-photos@champion" in capsys.readouterr().err  # said, with why
    named = "models:/emowatch-fer2013/1"
    assert site_model.resolve(cfg, named) == named  # --model wins
