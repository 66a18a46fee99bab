"""Progress is a callback the caller chooses; caveats come back as data, not only warnings."""

import io
import warnings

import numpy as np
import pytest

from advisor.compare import CompareRequest, run_compare
from advisor.download import HubFile, download_url, fetch
from advisor.features.pipeline import FeatureOptions, compute_features
from advisor.images import iter_batches, open_image_set
from advisor.progress import ProgressEvent, TqdmProgress, progress_task
from tests.conftest import write_images
from tests.httpserver import COMMIT, hub, serve

PAYLOAD = bytes(range(256)) * 12288  # 3 MiB: three 1 MiB reads


def test_a_task_reports_start_steps_and_finish_even_when_it_fails():
    events: list[ProgressEvent] = []
    with progress_task(events.append, "job", total=5) as advance:
        advance(2)
        advance(3)
    with pytest.raises(RuntimeError), progress_task(events.append, "bad", total=4) as advance:
        advance(1)
        raise RuntimeError("boom")
    assert [(e.task, e.done, e.finished) for e in events] == [
        ("job", 0, False), ("job", 2, False), ("job", 5, False), ("job", 5, True),
        ("bad", 0, False), ("bad", 1, False), ("bad", 1, True),
    ]  # fmt: skip
    assert events[2].fraction == 1.0 and events[-1].fraction == 0.25
    with progress_task(None, "nobody listens", total=3) as advance:
        advance(3)  # no callback: nothing to do, nothing fails


def test_tqdm_adapter_draws_one_bar_per_task_and_closes_it():
    out = io.StringIO()
    bars = TqdmProgress(file=out)
    with progress_task(bars, "a", total=2) as advance_a, progress_task(bars, "b", total=1) as b:
        advance_a(2)
        b(1)
    assert not bars._bars and "a" in out.getvalue() and "b" in out.getvalue()
    quiet = io.StringIO()
    with progress_task(TqdmProgress(enabled=False, file=quiet), "c", total=1) as advance:
        advance(1)
    assert quiet.getvalue() == ""


def test_feature_extraction_reports_to_the_callers_callback(tmp_path):
    folder = write_images(tmp_path / "imgs", 5)
    events: list[ProgressEvent] = []
    options = FeatureOptions(extractor="efficientnet-lite0", device="cpu", batch_size=2, workers=0)
    compute_features(folder, options=options, on_progress=events.append)
    assert {e.task for e in events} == {"features imgs"}
    assert [e.done for e in events] == [0, 2, 4, 5, 5] and events[-1].finished
    assert all(e.total == 5 and e.unit == "img" for e in events)


def test_compare_returns_its_caveats_as_notes_without_warnings(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(30, 40)))
    np.save(tmp_path / "b.npy", rng.normal(size=(20, 40)))
    request = CompareRequest(
        reference=tmp_path / "a.npy", candidate=tmp_path / "b.npy", bootstrap=0, kid_subsets=5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = run_compare(request)
    notes = result.notes
    assert any("protocol" in n and "unknown" in n for n in notes), notes  # the protocol's caveat
    assert any("N < D" in n for n in notes), notes  # small-sample FID (20 rows, 40 dims)
    assert any("KID subset size 1000" in n for n in notes), notes  # clamped to 20
    assert result.to_dict()["notes"] == list(notes)


def test_a_download_reports_bytes_to_the_callers_callback_and_resumes_from_its_offset(tmp_path):
    events: list[ProgressEvent] = []
    dest = tmp_path / "w.bin"
    (tmp_path / "w.bin.part").write_bytes(PAYLOAD[:1000])
    with serve({"/w.bin": PAYLOAD}) as srv:
        download_url(f"{srv.base_url}/w.bin", dest, sha256=None, progress=events.append)
    assert {e.task for e in events} == {"download w.bin"} and {e.unit for e in events} == {"B"}
    assert events[0].done == 1000 and events[-1].finished  # the resumed part counts as done
    assert events[-1].done == events[-1].total == len(PAYLOAD)
    assert [e.done for e in events] == sorted(e.done for e in events)


def test_a_hub_download_reports_to_the_callers_callback(tmp_path, monkeypatch):
    events: list[ProgressEvent] = []
    with hub({("org/models", "nets/demo.pkl"): PAYLOAD}) as log:
        monkeypatch.setenv("HF_ENDPOINT", log[0])
        source = HubFile(repo="org/models", file="nets/demo.pkl", revision=COMMIT)
        fetch(source, tmp_path / "demo.pkl", sha256=None, progress=events.append, offline=False)
    assert {e.task for e in events} == {"download demo.pkl"}
    assert events[-1].finished and events[-1].done == len(PAYLOAD)


def test_decoding_reports_files_as_its_own_task(tmp_path):
    folder = write_images(tmp_path / "imgs", 3)
    events: list[ProgressEvent] = []
    batches = list(
        iter_batches(open_image_set(folder), size=16, workers=0, on_progress=events.append)
    )
    assert sum(len(b.indices) for b in batches) == 3
    assert [(e.task, e.done, e.finished) for e in events] == [
        ("decode imgs", 0, False), ("decode imgs", 1, False), ("decode imgs", 2, False),
        ("decode imgs", 3, False), ("decode imgs", 3, True),
    ]  # fmt: skip


def test_a_xet_hub_download_reports_one_task_that_finishes_once():
    # huggingface_hub's Xet downloads make their bars from tqdm_class; with the caller's
    # callback they must feed one task (bytes written, not network bytes), whose total may
    # arrive late, and which finishes once at the end.
    from types import SimpleNamespace

    from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

    from advisor.progress import tqdm_class

    events: list[ProgressEvent] = []
    bars = tqdm_class(events.append, "download demo.pkl")
    reporter = XetDownloadProgressReporter(
        reconstruction_desc="demo.pkl", total=None, log_level=20, tqdm_class=bars
    )
    for written, received in [(0, 300), (400, 500), (1000, 600)]:
        reporter.update_progress(
            SimpleNamespace(
                total_bytes_completed=written,
                total_transfer_bytes_completed=received,
                total_bytes=1000,
                total_bytes_completion_rate=None,
                total_transfer_bytes_completion_rate=None,
            )  # fmt: skip
        )
    reporter.close()
    assert [(e.done, e.total, e.finished) for e in events] == [
        (0, None, False), (400, 1000, False), (1000, 1000, False), (1000, 1000, True),
    ]  # fmt: skip
