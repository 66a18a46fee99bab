"""The checkpoint registry: default entries, merging, validation, and packaging."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from advisor.checkpoints import CheckpointRecord, default_registry_path, load_registry
from advisor.checkpoints.registry import read_registry_file
from advisor.errors import AdvisorError

REPO = Path(__file__).resolve().parents[1]
NVLABS = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
NVLABS_FILES = {
    "ffhq-res256-mirror-paper256-noaug.pkl",
    "ffhq-res512-mirror-stylegan2-noaug.pkl",
    "ffhq-res1024-mirror-stylegan2-noaug.pkl",
    "celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl",
    "lsundog-res256-paper256-kimg100000-noaug.pkl",
}

ENTRY = """
[checkpoints.{name}]
description = "{description}"
format = "advisor"
resolution = 64
source_dataset = "mine"
licence = "private"
trust = "local"
path = "{path}"
"""


def _registry(tmp_path, filename, **fields):
    text = ENTRY.format(**{"name": "mine", "description": filename, "path": "mine.safetensors",
                           **fields})  # fmt: skip
    path = tmp_path / filename
    path.write_text(text)
    return path


def test_default_registry_lists_the_public_sources():
    registry = load_registry()
    records = list(registry)
    assert all(isinstance(r, CheckpointRecord) for r in records)
    nvlabs = [r for r in records if r.url and r.url.startswith(NVLABS)]
    assert {r.filename for r in nvlabs} == NVLABS_FILES
    assert all(r.format == "nvlabs-pkl" and r.trust == "official" for r in nvlabs)
    assert all("NVIDIA Source Code License-NC" in r.licence for r in nvlabs)
    assert {r.resolution for r in nvlabs} == {256, 512, 1024}
    imagenet = [r for r in records if r.name.startswith("imagenet-")]
    assert sorted(r.resolution for r in imagenet) == [128, 256, 512]
    remote = [r for r in records if r.location_kind != "path"]
    assert all(r.sha256 is None for r in remote)  # nobody publishes checksums for these


def test_default_registry_lists_the_installed_demo_zoo_with_pinned_hashes():
    import hashlib

    zoo = [r for r in load_registry() if "demo" in r.tags]
    assert len(zoo) >= 6 and all(r.format == "advisor" and r.resolution == 32 for r in zoo)
    for record in zoo:
        assert record.path is not None and record.path.is_file(), record.name
        assert record.path.with_suffix(".json").is_file()
        assert record.source_features is not None and record.source_features.is_file()
        assert hashlib.sha256(record.path.read_bytes()).hexdigest() == record.sha256
    assert default_registry_path().parent.name == "data"
    assert default_registry_path().parent.parent.name == "advisor"


def test_unknown_name_lists_known_names():
    with pytest.raises(AdvisorError, match="unknown checkpoint 'nope'; known: ffhq-256, "):
        load_registry().get("nope")


def test_env_and_explicit_files_merge_later_wins_with_warning(tmp_path, monkeypatch):
    env_a = _registry(tmp_path, "a.toml")
    env_b = _registry(tmp_path, "b.toml", name="other")
    explicit = _registry(tmp_path, "c.toml")
    monkeypatch.setenv("ADVISOR_REGISTRY", os.pathsep.join([str(env_a), str(env_b)]))
    with pytest.warns(UserWarning, match="'mine' from .*c.toml replaces the one from .*a.toml"):
        registry = load_registry([explicit])
    assert registry.get("mine").description == "c.toml"
    assert registry.get("other").description == "b.toml"
    assert "ffhq-256" in registry
    assert registry.get("mine").path == tmp_path / "mine.safetensors"  # relative to the file


@pytest.mark.parametrize(
    "text, match",
    [
        ('[checkpoints.x]\nformat = "advisor"\n', "missing resolution"),
        ("not = [valid", "not valid TOML"),
        ('[checkpoints.x]\nformat = "onnx"\nresolution = 64\nsource_dataset = "d"\n'
         'licence = "l"\ntrust = "local"\npath = "p"\n', "format must be one of"),
        ('[checkpoints.x]\nformat = "advisor"\nresolution = 64\nsource_dataset = "d"\n'
         'licence = "l"\ntrust = "local"\npath = "p"\nurl = "https://x/y"\n', "exactly one of"),
        ('[checkpoints.x]\nformat = "advisor"\nresolution = 64\nsource_dataset = "d"\n'
         'licence = "l"\ntrust = "local"\nhf = { repo = "a/b", file = "f" }\n', "pinned revision"),
        ('[checkpoints.x]\nformat = "advisor"\nresolution = 64\nsource_dataset = "d"\n'
         'licence = "l"\ntrust = "local"\npath = "p"\nsha256 = "abc"\n', "64 hex digits"),
        ('[checkpoints.x]\nformat = "advisor"\nresolution = 60\nsource_dataset = "d"\n'
         'licence = "l"\ntrust = "local"\npath = "p"\n', "power of two"),
        ('[checkpoints.x]\nformat = "advisor"\nresolution = 64\nsource_dataset = "d"\n'
         'licence = "l"\ntrust = "maybe"\npath = "p"\nkimg = 3\n', "unknown keys"),
    ],
)  # fmt: skip
def test_invalid_registry_files_are_one_line_errors(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(AdvisorError, match=match) as info:
        read_registry_file(path)
    assert "\n" not in str(info.value)


def test_missing_registry_file_is_an_error(tmp_path):
    with pytest.raises(AdvisorError, match="registry file not found"):
        load_registry([tmp_path / "absent.toml"])


def test_default_registry_ships_in_a_regular_install(tmp_path):
    """Build a wheel from a copy of the sources, install it with --target, read the registry."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "advisor", src / "advisor",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "w"),
                    str(src)], check=True, cwd=tmp_path)  # fmt: skip
    wheel = next((tmp_path / "w").glob("advisor-*.whl"))
    assert "advisor/data/registry.toml" in zipfile.ZipFile(wheel).namelist()
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    code = (
        "import advisor, advisor.checkpoints.registry as r; "
        "print(advisor.__file__); print(len(r.load_registry()))"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    assert out[0].startswith(str(site))
    assert int(out[1]) == len(load_registry())
