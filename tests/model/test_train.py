"""Training on real Open-i reports: it learns, thresholds come from val, it resumes exactly, the CLI works."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxrsearch.errors import ConfigError
from cxrsearch.model.losses import LossConfig
from cxrsearch.model.train import TrainOptions, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(reports_tgz: Path, tmp_path_factory: pytest.TempPathFactory):
    """One short real run, shared by the tests below: tiny-test towers fine-tuned on 600 reports.
    Whole reports only: finding sentences help pretrained towers read short queries, but dilute the
    600 reports that randomly initialised tiny towers learn from in 6 epochs (0.65 vs 0.82 val AUROC)."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRSEARCH_CACHE", str(root / "cache"))
        options = TrainOptions(
            data=reports_tgz,
            config="tiny-test",
            out=root / "ckpt",
            epochs=6,
            batch_size=32,
            lr=3e-3,
            limit=600,
            seed=0,
            finding_sentences=False,
        )
        return options, train(options)


def test_real_training_run_learns_well_above_chance(trained):
    options, result = trained
    aurocs = [epoch.val_macro_auroc for epoch in result.history]
    assert result.best_val_macro_auroc > 0.72, aurocs
    assert result.best_val_macro_auroc > aurocs[0] + 0.05, aurocs
    assert result.best_val_macro_auroc == max(aurocs)
    assert result.n_train > 400 and result.n_val > 50 and result.last_epoch <= options.epochs
    assert (result.checkpoint / "model.safetensors").is_file() and (result.checkpoint / "config.json").is_file()
    assert all(e.contrastive is None and e.text_supcon is not None for e in result.history)  # text only: no images here


def test_checkpoint_thresholds_are_tuned_on_val_not_test(trained, reports_tgz):
    from cxrsearch.data.openi import load_studies
    from cxrsearch.model.checkpoint import load_checkpoint
    from cxrsearch.model.encode import Encoder
    from cxrsearch.model.metrics import macro_auroc, tune_thresholds
    from cxrsearch.model.train_data import load_training_data
    from cxrsearch.model.train_loop import SplitInputs, predict

    options, result = trained
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.info.data_fingerprint == result.data_fingerprint
    assert ckpt.metrics["thresholds_tuned_on"] == "val" and ckpt.metrics["best_epoch"] == result.best_epoch
    val = load_training_data(reports_tgz, limit=options.limit).val
    # The saved weights, run through training's own validation pass (same code, same batches), give
    # the recorded AUROC and thresholds. Only that path is sure to: AUROC and the F1 cut are rank
    # statistics, the val set holds positives and negatives whose probabilities lie within 1e-5 of each
    # other, and another batching (the Encoder's) moves each probability by ~1e-7 of float rounding
    # that depends on the CPU and the thread count, which can swap such a pair.
    inputs = SplitInputs(ckpt.model, val, device="cpu", frozen=False, cache_root=None, all_images=True)
    val_probs = predict(ckpt.model, inputs, options.eval_batch_size)
    assert macro_auroc(val.targets, val_probs) == pytest.approx(result.best_val_macro_auroc, abs=1e-4)
    retuned = tune_thresholds(val.targets, val_probs, ckpt.labels)
    assert ckpt.thresholds == pytest.approx(retuned.values, abs=1e-5)
    # and the Encoder (what index and search use) predicts the same probabilities, up to float rounding
    encoder = Encoder(ckpt)
    np.testing.assert_allclose(encoder.encode(texts=list(val.texts)).probs, val_probs, rtol=0, atol=1e-5)

    test = [s for s in load_studies(reports_tgz) if s.split == "test" and s.report_text()]
    test_targets = np.array([[float(label in s.labels) for label in ckpt.labels] for s in test])
    on_test = tune_thresholds(test_targets, encoder.encode(texts=[s.report_text() for s in test]).probs, ckpt.labels)
    tuned_both = [
        j for j, name in enumerate(ckpt.labels) if name not in retuned.fallback and name not in on_test.fallback
    ]
    assert any(abs(ckpt.thresholds[j] - on_test.values[j]) > 1e-3 for j in tuned_both)


def test_existing_run_is_refused_without_resume_and_with_changed_options(trained):
    options, _ = trained
    with pytest.raises(ConfigError, match="--resume"):
        train(options)
    changed = TrainOptions(**{**options.__dict__, "resume": True, "lr": 1e-2})
    with pytest.raises(ConfigError, match="lr"):
        train(changed)


def _frozen_options(reports_tgz: Path, out: Path, **changes) -> TrainOptions:
    values = dict(
        data=reports_tgz,
        config="tiny-test",
        out=out,
        epochs=3,
        batch_size=32,
        lr=3e-3,
        limit=300,
        freeze_encoders=True,
        seed=1,
        loss=LossConfig(focal_weight=0.5),
    )
    return TrainOptions(**{**values, **changes})


def test_resume_after_interruption_ends_like_an_uninterrupted_run(reports_tgz, tmp_path, _isolate_user_paths):
    import torch
    from safetensors.torch import load_file

    from cxrsearch.model.checkpoint import read_checkpoint_info

    straight = train(_frozen_options(reports_tgz, tmp_path / "straight"))
    cache_files = list((_isolate_user_paths / "cache" / "features").glob("text-*.safetensors"))
    assert len(cache_files) == 2  # train and val text-tower outputs, computed once

    def interrupt_after_first_epoch(event):
        if event.stage == "epoch_end" and event.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_frozen_options(reports_tgz, tmp_path / "resumed"), progress=interrupt_after_first_epoch)
    epochs_run = []
    resumed = train(
        _frozen_options(reports_tgz, tmp_path / "resumed", resume=True),
        progress=lambda e: epochs_run.append(e.epoch) if e.stage == "epoch_start" else None,
    )
    assert resumed.resumed_from == 1 and epochs_run == [2, 3]
    assert [(e.train_loss, e.val_macro_auroc) for e in resumed.history] == [
        (e.train_loss, e.val_macro_auroc) for e in straight.history
    ]
    assert (
        read_checkpoint_info(resumed.checkpoint).extra["epoch"]
        == read_checkpoint_info(straight.checkpoint).extra["epoch"]
    )
    for name in ("model.safetensors", "train_state/state-3.safetensors"):  # best weights; final weights + optimizer
        saved = [load_file(str(run.checkpoint / name)) for run in (straight, resumed)]
        assert saved[0].keys() == saved[1].keys() and all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])

    with pytest.raises(ConfigError, match="--resume"):
        train(_frozen_options(reports_tgz, tmp_path / "nothing-here", resume=True))


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 1}, {"lr": -1.0}, {"lr": math.nan}, {"device": "tpu"}])
def test_bad_options_raise_config_error(reports_tgz, tmp_path, bad):
    with pytest.raises(ConfigError):
        train(_frozen_options(reports_tgz, tmp_path / "out", **bad))


def test_cli_train_writes_a_checkpoint(reports_tgz, tmp_path):
    from cxrsearch.cli.main import app

    out = tmp_path / "cli-ckpt"
    args = [
        "train",
        "--data",
        str(reports_tgz),
        "--config",
        "tiny-test",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--limit",
        "200",
        "--batch-size",
        "32",
        "--freeze-encoders",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert "val macro AUROC" in result.output and "cli-ckpt" in result.output

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "error:" in again.output and "--resume" in again.output
    bad = CliRunner().invoke(app, [*args[:-1], "--batch-size", "1", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "batch-size" in bad.output


def test_training_data_never_contains_test_studies_and_is_fingerprinted(reports_tgz):
    from cxrsearch.data.openi import load_studies
    from cxrsearch.model.train_data import load_training_data
    from cxrsearch.model.train_loop import plan_batches

    data = load_training_data(reports_tgz, limit=300)
    split_of = {s.uid: s.split for s in load_studies(reports_tgz)}
    assert {split_of[u] for u in data.train.uids} == {"train"} and {split_of[u] for u in data.val.uids} == {"val"}
    assert len(data.train) + len(data.val) + data.skipped == 300
    assert data.fingerprint == load_training_data(reports_tgz, limit=300).fingerprint
    assert data.fingerprint != load_training_data(reports_tgz, limit=299).fingerprint
    row = data.train.label_sets.index(("cardiomegaly",)) if ("cardiomegaly",) in data.train.label_sets else 0
    assert [data.labels[j] for j in np.flatnonzero(data.train.targets[row])] == sorted(data.train.label_sets[row])

    epoch1 = plan_batches(data.train, 32, seed=0, epoch=1)
    assert sorted(r for b in epoch1 for r in b.rows) == list(range(len(data.train)))
    assert epoch1 == plan_batches(data.train, 32, seed=0, epoch=1) != plan_batches(data.train, 32, seed=0, epoch=2)
