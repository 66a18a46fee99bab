"""advisor finetune: initialisation, FreezeD, ADA, exact resume, kills, the CLI and DDP.

Networks are tiny (16x16, 32 channels) and runs a few steps long, so the whole file runs in
seconds on a CPU; the metric extractor is the offline EfficientNet-Lite0.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from click.testing import CliRunner

from advisor.checkpoints.format import Checkpoint, CheckpointMetadata, save_checkpoint
from advisor.errors import AdvisorError
from advisor.finetuning import FinetuneOptions, TrainingEvent, finetune, load_run, loss_signal
from advisor.finetuning.inputs import build_networks
from advisor.finetuning.options import auto_batch, resolve
from advisor.finetuning.training import Trainer, d_layers
from advisor.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from tests.conftest import write_images

REPO = Path(__file__).resolve().parents[1]
G_CFG = GeneratorConfig(
    z_dim=32, w_dim=32, img_resolution=16, channel_base=512, channel_max=32, mapping_layers=2
)
D_CFG = DiscriminatorConfig(img_resolution=16, channel_base=512, channel_max=32, mbstd_group_size=4)
FAST = dict(
    batch=8,
    kimg=0.032,
    tick_kimg=0.008,
    metric_every=0.016,
    metric_samples=12,
    snapshot_every=0.016,
    grid_seeds=4,
    pl_weight=2.0,
    r1_interval=2,
    pl_interval=2,
)


def _checkpoint(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    G, D = Generator(G_CFG), Discriminator(D_CFG)
    G_ema = Generator(G_CFG)
    G_ema.load_state_dict(G.state_dict())
    meta = CheckpointMetadata(name="tiny", generator=G_CFG, discriminator=D_CFG, licence="test")
    save_checkpoint(path, Checkpoint(metadata=meta, G_ema=G_ema, G=G, D=D))
    return path.with_suffix(".safetensors")


@pytest.fixture
def source(tmp_path):
    return _checkpoint(tmp_path / "tiny")


@pytest.fixture
def target(tmp_path):
    return write_images(tmp_path / "target", 12, size=16, seed=3)


def _load_ckpt(path):
    from advisor.checkpoints.format import load_checkpoint

    return load_checkpoint(path)


@pytest.mark.parametrize("g_init", ["pretrained", "random"])
@pytest.mark.parametrize("d_init", ["pretrained", "random"])
def test_g_and_d_init_load_the_source_tensors_only_when_pretrained(source, g_init, d_init):
    ckpt = _load_ckpt(source)
    options = FinetuneOptions(g_init=g_init, d_init=d_init, seed=5)
    G, D, G_ema, report = build_networks(ckpt, options)
    same_g = all(
        torch.equal(a, b)
        for a, b in zip(G.state_dict().values(), ckpt.G.state_dict().values(), strict=True)
    )
    same_d = all(
        torch.equal(a, b)
        for a, b in zip(D.state_dict().values(), ckpt.D.state_dict().values(), strict=True)
    )
    assert same_g == (g_init == "pretrained")
    assert same_d == (d_init == "pretrained")
    assert report["G"]["init"] == g_init and report["D"]["init"] == d_init
    if g_init == "random":  # G_ema starts as a copy of the fresh G
        assert all(
            torch.equal(a, b)
            for a, b in zip(G.state_dict().values(), G_ema.state_dict().values(), strict=True)
        )
        assert report["G"]["reinitialised"] == len(G.state_dict())
    # The same seed re-initialises identically; a random init is not the source's.
    G2, D2, _, _ = build_networks(ckpt, options)
    assert all(
        torch.equal(a, b)
        for a, b in zip(D.state_dict().values(), D2.state_dict().values(), strict=True)
    )


def test_freeze_d_counts_layers_from_the_input_and_frozen_values_never_change(source):
    ckpt = _load_ckpt(source)
    names = [name for name, _ in d_layers(ckpt.D)]
    # NVlabs' order for the resnet D: the 16 px block's fromrgb, conv0, conv1, skip, then 3 per
    # block (8 px); the b4 epilogue is not counted.
    assert names == [
        "b16.fromrgb",
        "b16.conv0",
        "b16.conv1",
        "b16.skip",
        "b8.conv0",
        "b8.conv1",
        "b8.skip",
    ]
    options = resolve(
        FinetuneOptions(batch=8, freeze_d=4, aug="none", r1_interval=1), resolution=16
    )
    G, D, G_ema, _ = build_networks(ckpt, options)
    trainer = Trainer(G=G, D=D, G_ema=G_ema, options=options, device=torch.device("cpu"))
    assert trainer.frozen == names[:4]
    before = {k: v.clone() for k, v in D.state_dict().items()}
    reals = torch.rand(8, 3, 16, 16) * 2 - 1
    for _ in range(3):
        trainer.step(reals)
    after = D.state_dict()
    for key, value in before.items():
        frozen = any(key.startswith(name + ".") for name in names[:4])
        if key.endswith("resample_filter"):
            continue
        assert torch.equal(value, after[key]) == frozen, key
    optimised = {id(p) for group in trainer.opt_D.param_groups for p in group["params"]}
    for name in names[:4]:
        assert all(id(p) not in optimised for p in D.get_submodule(name).parameters())


def test_ada_adjusts_p_every_interval_from_the_mean_sign_of_real_logits(source, monkeypatch):
    import advisor.finetuning.training as training

    calls = []

    def spy(p, sign_mean, **kw):
        calls.append((p, sign_mean, kw))
        return training_ada(p, sign_mean, **kw)

    training_ada = training.ada_adjust
    monkeypatch.setattr(training, "ada_adjust", spy)
    ckpt = _load_ckpt(source)
    options = resolve(
        FinetuneOptions(batch=8, aug="ada", ada_kimg=1.0, ada_interval=2, r1_gamma=0.0),
        resolution=16,
    )
    G, D, G_ema, _ = build_networks(ckpt, options)
    trainer = Trainer(G=G, D=D, G_ema=G_ema, options=options, device=torch.device("cpu"))
    reals = torch.rand(8, 3, 16, 16) * 2 - 1
    trainer.step(reals)
    assert calls == [] and trainer.ada_count == 8  # nothing before `interval` minibatches
    signs_after_one = trainer.ada_signs
    trainer.step(reals)
    assert len(calls) == 1 and trainer.ada_count == 0
    p, sign_mean, kw = calls[0]
    assert p == 0.0 and kw == {"batch": 8, "interval": 2, "ada_kimg": 1.0, "target": 0.6}
    assert -1.0 <= sign_mean <= 1.0 and abs(signs_after_one) <= 8
    # The loss-only signal's ada_rt over the same two steps is the statistic ADA acted on.
    signal = trainer.take_tick_signal()
    assert signal["ada_rt"] == pytest.approx(sign_mean, abs=1e-12)
    assert signal["d_gap"] == pytest.approx(signal["d_real"] - signal["d_fake"], abs=1e-12)
    assert trainer.tick_sums == [0.0, 0.0, 0.0, 0]  # the next tick starts empty
    step = 8 * 2 / 1000
    expected = step if sign_mean > 0.6 else 0.0  # p is clamped at 0 from below
    assert trainer.ada_p == pytest.approx(expected, abs=1e-7)


def test_a_run_leaves_a_complete_folder_and_snapshots_are_normal_checkpoints(
    source, target, tmp_path
):
    events: list[TrainingEvent] = []
    run = finetune(
        source,
        target,
        run_dir=tmp_path / "run",
        options=FinetuneOptions(**FAST),
        device="cpu",
        progress=events.append,
    )
    folder = run.path
    for name in ("config.json", "metrics.jsonl", "stats.jsonl", "summary.json", "curves.png"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["options"]["batch"] == 8 and config["options"]["r1_gamma"] > 0
    assert config["load_report"]["G"]["init"] == "pretrained"
    kimgs = [m.kimg for m in run.metrics]
    assert kimgs == [0.0, 0.016, 0.032]
    assert run.best_snapshot is not None
    best = _load_ckpt(run.best_snapshot)
    assert best.G is not None and best.D is not None
    assert sorted(p.name for p in (folder / "samples").iterdir()) == [
        "grid-000000016.png",
        "grid-000000032.png",
    ]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["finished"] and summary["stopped_by"] == "kimg" and summary["kimg"] == 0.032
    # The loss-only signal: per tick in stats.jsonl, its settling point in summary.json.
    stats = [json.loads(line) for line in (folder / "stats.jsonl").read_text().splitlines()]
    ema, halflife = None, loss_signal.DEFAULT_SIGNAL_HALFLIFE
    for line in stats:
        assert -1.0 <= line["ada_rt"] <= 1.0
        assert line["d_gap"] == pytest.approx(line["d_real"] - line["d_fake"], abs=2e-6)
        ema = round(loss_signal.ema_step(ema, line["d_gap"], halflife=halflife), 6)
        assert line["d_gap_ema"] == ema
    signal = summary["loss_signal"]
    assert signal["signal"] == "d_gap" and signal["ticks"] == len(stats) == 4
    expected = loss_signal.signal_convergence(stats, plateau_kimg=summary["plateau_kimg"])
    assert signal == json.loads(json.dumps(expected.to_dict()))
    assert summary["plateau_kimg"] is None and signal["kimg_from_plateau"] is None  # 3 evaluations
    assert "fid has not plateaued" in signal["note"]
    # The caller's callback saw every tick and evaluation as typed events, with their numbers.
    ticks = [e for e in events if e.kind == "tick"]
    evaluations = [e for e in events if e.kind == "metrics"]
    assert [e.values["tick"] for e in ticks] == [line["tick"] for line in stats]
    assert ticks[0].values["loss_g"] == stats[0]["loss_g"] and "kimg" not in ticks[0].values
    assert [e.kimg for e in evaluations] == kimgs
    assert [e.values["fid"] for e in evaluations] == [m.metrics["fid"] for m in run.metrics]
    assert all(e.total_kimg == 0.032 for e in events)
    assert events[-1].progress.fraction == 1.0 and evaluations[0].progress.done == 0


def test_resume_continues_exactly_as_an_uninterrupted_run(source, target, tmp_path):
    options = FinetuneOptions(**{**FAST, "metric_every": None})
    whole = finetune(source, target, run_dir=tmp_path / "whole", options=options, device="cpu")
    half = FinetuneOptions(**{**FAST, "metric_every": None, "kimg": 0.016})
    finetune(source, target, run_dir=tmp_path / "split", options=half, device="cpu")
    from advisor.finetuning import resume

    resumed = resume(tmp_path / "split", kimg=0.032, device="cpu")
    a = safetensors.torch.load_file(str(whole.path / "snapshots/snapshot-000000032.safetensors"))
    b = safetensors.torch.load_file(str(resumed.path / "snapshots/snapshot-000000032.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    sa = json.loads((whole.path / "snapshots/state-000000032.json").read_text())["scalars"]
    sb = json.loads((resumed.path / "snapshots/state-000000032.json").read_text())["scalars"]
    assert sa == sb


def test_resume_in_the_middle_of_a_tick_keeps_the_loss_signal_exact(source, target, tmp_path):
    # Ticks of 16 images, the first part stops (and snapshots) after 8: the half-tick's sums
    # and the EMA must come back from the snapshot and stats.jsonl.
    fields = ("ada_rt", "d_real", "d_fake", "d_gap", "d_gap_ema", "loss_g", "loss_d")
    base = {**FAST, "metric_every": None, "tick_kimg": 0.016}
    whole = finetune(
        source, target, run_dir=tmp_path / "whole", options=FinetuneOptions(**base), device="cpu"
    )
    half = FinetuneOptions(**{**base, "kimg": 0.008})
    finetune(source, target, run_dir=tmp_path / "split", options=half, device="cpu")
    from advisor.finetuning import resume

    resumed = resume(tmp_path / "split", kimg=0.032, device="cpu")
    a = [{k: s[k] for k in ("nimg", *fields)} for s in whole.stats]
    b = [{k: s[k] for k in ("nimg", *fields)} for s in resumed.stats]
    assert [s["nimg"] for s in a] == [16, 32] and a == b


def _cli(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "advisor", "finetune", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )


def test_sigkill_at_any_moment_then_resume_keeps_kimg_steps_and_metric_history(
    source, target, tmp_path
):
    run_dir = tmp_path / "run"
    args = [
        "--batch",
        "8",
        "--kimg",
        "0.064",
        "--tick-kimg",
        "0.008",
        "--metric-every",
        "0.016",
        "--metric-samples",
        "12",
        "--snapshot-every",
        "0.016",
        "--device",
        "cpu",
        "-q",
    ]
    proc = _cli(str(source), str(target), "--run-dir", str(run_dir), *args)
    latest = run_dir / "snapshots" / "latest.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["nimg"] >= 16:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(latest.read_text())["nimg"]
    done = _cli("--resume", str(run_dir), "--device", "cpu", "-q")
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    run = load_run(run_dir)
    assert [m.nimg for m in run.metrics] == [0, 16, 32, 48, 64]  # no gap, no repeat
    state = json.loads((run_dir / "snapshots" / "state-000000064.json").read_text())["scalars"]
    assert state["nimg"] == 64 and state["step"] == 8 and killed_at < 64
    stats = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert [s["nimg"] for s in stats] == [8 * i for i in range(1, 9)]


def test_ctrl_c_writes_a_snapshot_and_exits_cleanly(source, target, tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "--batch",
        "8",
        "--kimg",
        "10",
        "--tick-kimg",
        "0.008",
        "--metric-every",
        "0",
        "--snapshot-every",
        "100",
        "--device",
        "cpu",
        "-q",
    ]
    proc = _cli(str(source), str(target), "--run-dir", str(run_dir), *args)
    stats = run_dir / "stats.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (stats.is_file() and stats.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped_by"] == "interrupt" and not summary["finished"]
    latest = json.loads((run_dir / "snapshots" / "latest.json").read_text())
    assert latest["nimg"] == int(round(summary["kimg"] * 1000)) > 0


def test_cli_runs_end_to_end_offline_with_json(source, target, tmp_path, monkeypatch):
    from advisor.cli import main

    monkeypatch.setenv("ADVISOR_OFFLINE", "1")
    result = CliRunner().invoke(
        main,
        [
            "finetune",
            str(source),
            str(target),
            "--run-dir",
            str(tmp_path / "run"),
            "--batch",
            "8",
            "--kimg",
            "0.016",
            "--metric-every",
            "0.016",
            "--metric-samples",
            "12",
            "--snapshot-every",
            "0.016",
            "--g-init",
            "random",
            "--d-init",
            "random",
            "--device",
            "cpu",
            "--json",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kimg"] == 0.016 and summary["evaluations"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kimg", "-1"], "kimg"),
        (["--kimg", "nan"], "kimg"),
        (["--freeze-d", "99"], "freeze-d 99"),
        (["--batch", "6"], "minibatch-std"),
        (["--aug-p", "2"], "aug_p"),
        (["--seed", "-3"], "seed"),
    ],
)
def test_bad_options_are_one_line_before_any_work(source, target, tmp_path, args, message):
    from advisor.cli import main

    result = CliRunner().invoke(
        main,
        [
            "finetune",
            str(source),
            str(target),
            "--run-dir",
            str(tmp_path / "run"),
            "--device",
            "cpu",
            *args,
        ],
    )
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_resuming_a_folder_without_a_run_or_with_a_damaged_snapshot_is_one_line(
    source, target, tmp_path
):
    from advisor.finetuning import resume

    with pytest.raises(AdvisorError, match="no resumable run"):
        resume(tmp_path, device="cpu")
    options = FinetuneOptions(**{**FAST, "metric_every": None, "kimg": 0.016})
    run = finetune(source, target, run_dir=tmp_path / "run", options=options, device="cpu")
    snap = run.path / "snapshots" / "snapshot-000000016.safetensors"
    snap.write_bytes(snap.read_bytes()[:100])
    with pytest.raises(AdvisorError, match="damaged|does not match"):
        resume(run.path, kimg=0.032, device="cpu")


def test_a_checkpoint_without_a_discriminator_needs_d_init_random(tmp_path, target):
    torch.manual_seed(0)
    G = Generator(G_CFG)
    meta = CheckpointMetadata(name="g-only", generator=G_CFG, discriminator=D_CFG)
    save_checkpoint(tmp_path / "g", Checkpoint(metadata=meta, G_ema=G))
    with pytest.raises(AdvisorError, match="no D tensors"):
        finetune(
            tmp_path / "g.safetensors",
            target,
            run_dir=tmp_path / "run",
            options=FinetuneOptions(**FAST),
            device="cpu",
        )
    run = finetune(
        tmp_path / "g.safetensors",
        target,
        run_dir=tmp_path / "run2",
        options=FinetuneOptions(
            **{**FAST, "d_init": "random", "kimg": 0.008, "metric_every": None}
        ),
        device="cpu",
    )
    assert json.loads((run.path / "config.json").read_text())["load_report"]["G"]["from"] == "G_ema"


def test_ddp_with_two_cpu_processes_keeps_kimg_and_parameters_consistent(source, target, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(
        "import hashlib, json, os, sys, torch\n"
        "from pathlib import Path\n"
        "from advisor.finetuning import FinetuneOptions\n"
        "from advisor.finetuning.run import run_finetune\n"
        "opts = FinetuneOptions(**json.loads(sys.argv[3]))\n"
        "res = run_finetune(sys.argv[1], sys.argv[2], run_dir=sys.argv[4], options=opts,\n"
        "                   device='cpu')\n"
        "flat = torch.cat([p.detach().flatten() for p in res.trainer.G.parameters()]\n"
        "                 + [p.detach().flatten() for p in res.trainer.D.parameters()])\n"
        "Path(sys.argv[5], f\"end{os.environ['RANK']}.json\").write_text(json.dumps({\n"
        "    'params': hashlib.sha256(flat.numpy().tobytes()).hexdigest(),\n"
        "    'nimg': res.trainer.nimg, 'step': res.trainer.step_count}))\n"
    )  # each process writes its own file: parameters compared here, not through the group
    options = {**FAST, "kimg": 0.032, "metric_every": 0.016}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(source),
            str(target),
            json.dumps(options),
            str(tmp_path / "run"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ends = [json.loads((tmp_path / f"end{rank}.json").read_text()) for rank in (0, 1)]
    assert ends[0] == ends[1] and ends[0]["nimg"] == 32 and ends[0]["step"] == 4
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["nimg"] for m in metrics] == [0, 16, 32]
    assert metrics[0]["protocol"]["samples"] == 12


def test_ddp_ctrl_c_reaching_one_process_stops_every_process_after_the_same_step(
    source, target, tmp_path
):
    script = tmp_path / "worker.py"
    script.write_text(
        "import json, os, sys, torch.distributed as dist\n"
        "from pathlib import Path\n"
        "from advisor.finetuning import FinetuneOptions\n"
        "from advisor.finetuning.run import run_finetune\n"
        "Path(sys.argv[5], f'pid{os.environ[\"RANK\"]}').write_text(str(os.getpid()))\n"
        "opts = FinetuneOptions(**json.loads(sys.argv[3]))\n"
        "res = run_finetune(sys.argv[1], sys.argv[2], run_dir=sys.argv[4], options=opts,\n"
        "                   device='cpu')\n"
        "rank = int(os.environ['RANK'])\n"
        "Path(sys.argv[5], f'end{rank}.json').write_text(json.dumps({'rank': rank,\n"
        "    'stopped_by': res.stopped_by, 'nimg': res.trainer.nimg,\n"
        "    'group_left': not dist.is_initialized()}))\n"
    )  # one file per process: two processes printing to one pipe can interleave their lines
    options = {**FAST, "kimg": 10.0, "metric_every": None, "snapshot_every": 100.0}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", str(script), str(source), str(target), json.dumps(options),
               str(tmp_path / "run"), str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    stats = tmp_path / "run" / "stats.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (tmp_path / "pid1").is_file() and stats.is_file() and stats.read_text():
            break
        time.sleep(0.05)
    os.kill(int((tmp_path / "pid1").read_text()), signal.SIGINT)  # rank 1 only, mid-run
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    ends = [json.loads((tmp_path / f"end{rank}.json").read_text()) for rank in (0, 1)]
    assert [e["stopped_by"] for e in ends] == ["interrupt", "interrupt"]
    assert all(e["group_left"] for e in ends)  # advisor joined the group, so it left it
    assert ends[0]["nimg"] == ends[1]["nimg"] < 10_000
    latest = json.loads((tmp_path / "run" / "snapshots" / "latest.json").read_text())
    assert latest["nimg"] == ends[0]["nimg"]


@pytest.mark.parametrize(
    ("resolution", "devices", "batch"),
    [
        (1024, 1, 4),
        (256, 1, 16),
        (32, 1, 32),
        (256, 4, 64),
        (1024, 8, 32),
        (32, 3, 63),
        (16, 5, 60),
    ],
)
def test_auto_batch_is_nvlabs_rule_and_always_splits_over_the_devices(resolution, devices, batch):
    assert auto_batch(resolution, devices) == batch
    options = resolve(FinetuneOptions(), resolution=resolution, world_size=devices)
    assert options.batch == batch and batch % devices == 0
