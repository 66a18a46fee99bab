"""advisor: choose the pretrained StyleGAN2 checkpoint to fine-tune for a small image dataset.

The Python API (names resolve lazily, so ``import advisor`` stays cheap)::

    import advisor
    target = advisor.compute_features("target/", options=advisor.FeatureOptions(
        extractor="efficientnet-lite0"))
    result = advisor.run_compare(advisor.CompareRequest(reference="target/", candidate="samples/"))
    print(result.to_dict()["recall"])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    # image sets
    "open_image_set": "advisor.images",
    "load_images": "advisor.images",
    "iter_batches": "advisor.images",
    # features
    "get_extractor": "advisor.features",
    "list_extractors": "advisor.features",
    "FeatureProtocol": "advisor.features",
    "ExtractionOptions": "advisor.features.pipeline",
    "FeatureOptions": "advisor.features.pipeline",
    "FeatureSet": "advisor.features.pipeline",
    "compute_features": "advisor.features.pipeline",
    "load_features": "advisor.features.pipeline",
    "save_features": "advisor.features.pipeline",
    "extract_features": "advisor.features.extract",
    "SharedExtractor": "advisor.features.extract",
    "ImageSetFeatureStore": "advisor.features.store",
    "SampleFeatureStore": "advisor.features.store",
    # metrics
    "MetricOptions": "advisor.metrics",
    "compare_features": "advisor.metrics",
    "fid": "advisor.metrics",
    "kid": "advisor.metrics",
    "precision_recall": "advisor.metrics",
    "density_coverage": "advisor.metrics",
    # comparing two sets
    "CompareRequest": "advisor.compare",
    "run_compare": "advisor.compare",
    # checkpoints and sampling
    "load_registry": "advisor.checkpoints",
    "load_checkpoint": "advisor.checkpoints",
    "import_checkpoint": "advisor.checkpoints",
    "sample": "advisor.sampling",
    # fine-tuning and runs
    "FinetuneOptions": "advisor.finetuning",
    "finetune": "advisor.finetuning",
    "resume_finetune": "advisor.finetuning",
    "TrainingEvent": "advisor.finetuning",
    "load_run": "advisor.runs",
    # ranking checkpoints for a target
    "rank": "advisor.ranking",
    "Ranking": "advisor.ranking",
    "RankOptions": "advisor.ranking",
    "AdvisorError": "advisor.errors",
    # progress callbacks (every long call takes one)
    "ProgressEvent": "advisor.progress",
    "TqdmProgress": "advisor.progress",
    # the job service's client (advisor serve)
    "Client": "advisor.serve.client",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'advisor' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
