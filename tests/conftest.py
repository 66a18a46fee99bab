import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty advisor cache and no weights override from the environment."""
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path_factory.mktemp("advisor-cache")))
    monkeypatch.delenv("ADVISOR_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("ADVISOR_REGISTRY", raising=False)


def write_images(folder, n, *, size=32, seed=0, offset=0.0):
    """Write ``n`` random RGB PNGs ``img_000.png``... into ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = np.clip(rng.normal(128 + offset, 60, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")
    return folder
