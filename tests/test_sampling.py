"""Sampling by seed: the uint8 NCHW contract, batch-size independence, and PNG output."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from advisor.networks import to_uint8, z_from_seeds
from advisor.sampling import parse_seeds, png_paths, sample, write_pngs
from tests.test_checkpoints_fixtures import tiny_networks


@pytest.fixture(scope="module")
def generator():
    return tiny_networks(seed=21)[1]


@pytest.mark.parametrize(
    "text, seeds",
    [
        ("0-3", [0, 1, 2, 3]),
        ("7", [7]),
        ("0-2,100, 200-201", [0, 1, 2, 100, 200, 201]),
        ("5,3,4", [5, 3, 4]),
        (f"{2**32 - 1}", [2**32 - 1]),
    ],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "3-1", "1-2-3", "1,,2", "1,1", "0-2,2", f"{2**32}"])
def test_parse_seeds_rejects(text):
    with pytest.raises(ValueError):
        parse_seeds(text)


class _LatentEcho(torch.nn.Module):
    """A stand-in generator whose image is its latent: pixel c of seed s is
    ``psi * z[c] / 4`` with ``z = RandomState(s).randn(4)``, so expected pixels are known
    numbers, not a rerun of advisor's code."""

    config = SimpleNamespace(z_dim=4)

    def forward(self, z, *, truncation_psi, noise_mode, noise_generator):  # noqa: ANN001
        return (truncation_psi * z[:, :3] / 4).reshape(len(z), 3, 1, 1)


def test_sample_known_answer_from_numpy_latents_and_nvlabs_quantisation():
    # RandomState(0).randn(4) = [1.76405235, 0.40015721, 0.97873798, 2.2408932] and
    # RandomState(1).randn(4) = [1.62434536, -0.61175641, -0.52817175, -1.07296862]; with
    # psi 0.5 each pixel is z / 8, quantised as NVlabs does: trunc(clamp(x * 127.5 + 128)):
    # 1.76405235 / 8 * 127.5 + 128 = 156.11 -> 156, -0.61175641 / 8 * 127.5 + 128 = 118.25 -> 118.
    batches = list(sample(_LatentEcho(), [0, 1], batch_size=1, truncation_psi=0.5))
    images = torch.cat(batches)
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 1, 1)
    assert images.flatten().tolist() == [156, 134, 143, 153, 118, 119]


def test_sample_contract_and_equals_one_generator_call(generator):
    seeds = [4, 8, 15, 16, 23]
    batches = list(sample(generator, seeds, batch_size=2, truncation_psi=0.7))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    images = torch.cat(batches)
    assert images.dtype == torch.uint8 and images.shape == (5, 3, 16, 16)
    assert images.device.type == "cpu"
    with torch.no_grad():
        expected = to_uint8(generator(z_from_seeds(seeds, 8), truncation_psi=0.7))
    assert torch.equal(images, expected)


@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_batch_size_never_changes_a_pixel(generator, noise_mode):
    seeds = list(range(10, 17))
    runs = [
        torch.cat(list(sample(generator, seeds, batch_size=b, noise_mode=noise_mode)))
        for b in (1, 3, 32)
    ]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    # An image depends on its own seed only: reordering seeds reorders images.
    reordered = torch.cat(list(sample(generator, seeds[::-1], noise_mode=noise_mode)))
    assert torch.equal(reordered, runs[0].flip(0))


def test_random_noise_is_seeded_per_image(generator):
    const = torch.cat(list(sample(generator, [1, 2], noise_mode="const")))
    rand = torch.cat(list(sample(generator, [1, 2], noise_mode="random")))
    again = torch.cat(list(sample(generator, [1, 2], noise_mode="random")))
    assert torch.equal(rand, again) and not torch.equal(rand, const)


def test_write_pngs_round_trips_and_refuses_to_overwrite(generator, tmp_path):
    seeds = [0, 1, 12345]
    paths = write_pngs(generator, seeds, tmp_path / "out", batch_size=2)
    assert [p.name for p in paths] == ["seed0000.png", "seed0001.png", "seed12345.png"]
    assert paths == png_paths(tmp_path / "out", seeds)
    expected = torch.cat(list(sample(generator, seeds))).numpy()
    for path, image in zip(paths, expected, strict=True):
        assert np.array_equal(np.asarray(Image.open(path)).transpose(2, 0, 1), image)
    before = paths[0].stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="exist already"):
        write_pngs(generator, [5, 1], tmp_path / "out")
    assert not (tmp_path / "out" / "seed0005.png").exists()  # checked before generating
    write_pngs(generator, seeds, tmp_path / "out", overwrite=True)
    assert paths[0].stat().st_mtime_ns >= before
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
