"""fp32 means fp32: the no-TF32 mode is scoped to the extractor's and the sampler's forward.

CPU tests check that the flags are off inside the forward and exactly as before after it
(also after an error, nested, across threads, and when the process mixed torch's two flag
APIs). The GPU test checks that the Python API, in a process that left TF32 on, computes the
features the CLI computes.
"""

import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from advisor.devices import fp32_math
from advisor.features.base import FeatureExtractor
from advisor.networks import Generator, GeneratorConfig
from advisor.sampling import sample
from tests.conftest import write_images

_BACKENDS = torch.backends


def _legacy() -> tuple[bool, bool]:
    return _BACKENDS.cuda.matmul.allow_tf32, _BACKENDS.cudnn.allow_tf32


def _precisions() -> tuple[str, str, str]:
    b = _BACKENDS
    return b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision, b.cudnn.rnn.fp32_precision


@pytest.fixture
def tf32_on():
    """A process that allows TF32 everywhere (the caller's choice), put back afterwards."""
    before = _legacy()
    _BACKENDS.cuda.matmul.allow_tf32 = True
    _BACKENDS.cudnn.allow_tf32 = True
    yield
    # The legacy setters also mend a state mixed through the new API.
    _BACKENDS.cuda.matmul.allow_tf32, _BACKENDS.cudnn.allow_tf32 = before


class _Probe(FeatureExtractor):
    """A tiny extractor whose features record the TF32 flags seen during the forward."""

    input_size = 8
    dim = 3
    pixel_mean = (0.0, 0.0, 0.0)
    pixel_std = (1.0, 1.0, 1.0)
    channels_last = False

    def __init__(self) -> None:
        super().__init__(name="probe")
        self.seen: list[tuple[bool, bool]] = []
        self.fail = False
        self.finish_init()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(_legacy())
        if self.fail:
            raise RuntimeError("boom")
        return x.mean(dim=(2, 3))


def test_the_extractor_forward_runs_without_tf32_and_restores_the_flags(tf32_on):
    probe = _Probe()
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    probe(images)
    assert probe.seen == [(False, False)]
    assert _legacy() == (True, True)
    probe.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        probe(images)
    assert _legacy() == (True, True)


def test_the_sampler_runs_without_tf32_and_restores_the_flags(tf32_on):
    G = Generator(
        GeneratorConfig(
            z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64, channel_max=8
        )
    )
    seen: list[tuple[bool, bool]] = []
    G.register_forward_hook(lambda module, args, out: seen.append(_legacy()))
    batches = list(sample(G, [0, 1, 2], batch_size=2))
    assert [b.shape[0] for b in batches] == [2, 1]
    assert seen == [(False, False), (False, False)]
    assert _legacy() == (True, True)


def test_flags_that_are_already_off_are_left_alone():
    before = _legacy()
    _BACKENDS.cuda.matmul.allow_tf32 = False
    _BACKENDS.cudnn.allow_tf32 = False
    try:
        off = _precisions()
        with fp32_math():
            assert _precisions() == off
        assert _precisions() == off
    finally:
        _BACKENDS.cuda.matmul.allow_tf32, _BACKENDS.cudnn.allow_tf32 = before


def test_overlapping_blocks_in_threads_restore_only_when_the_last_one_leaves(tf32_on):
    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[bool, bool]] = {}

    def a() -> None:
        with fp32_math():
            a_inside.set()
            b_inside.wait(10)
        a_left.set()

    def b() -> None:
        a_inside.wait(10)
        with fp32_math():
            b_inside.set()
            a_left.wait(10)
            seen["b after a left"] = _legacy()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["b after a left"] == (False, False)
    assert _legacy() == (True, True)
    with fp32_math(), fp32_math():  # nested in one thread
        assert _legacy() == (False, False)
    assert _legacy() == (True, True)


def test_a_process_that_mixed_the_two_flag_apis_is_served_through_the_new_one(tf32_on):
    # conv and rnn now disagree, so torch refuses to read the legacy cudnn flag.
    _BACKENDS.cudnn.conv.fp32_precision = "ieee"
    before = _precisions()
    with pytest.raises(RuntimeError):
        _BACKENDS.cudnn.allow_tf32  # noqa: B018
    with fp32_math():
        assert _precisions() == ("ieee", "ieee", "ieee")
    assert _precisions() == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_api_and_cli_give_identical_features_on_gpu(tmp_path, tf32_on):
    from advisor.cli import main
    from advisor.features.pipeline import FeatureOptions, compute_features, load_features

    folder = write_images(tmp_path / "imgs", 24, size=64)
    options = FeatureOptions(
        extractor="efficientnet-lite0", device="cuda", workers=0, cache=False, progress=False
    )
    api = compute_features(folder, options=options).features  # TF32 allowed process-wide
    assert _legacy() == (True, True)
    out = tmp_path / "cli.npz"
    args = ["features", str(folder), "--out", str(out), "--extractor", "efficientnet-lite0"]
    args += ["--device", "cuda", "--workers", "0", "--no-cache", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(api, load_features(out).features)
