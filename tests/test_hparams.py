"""The learning-rate / epochs search on held-out validation paraphrases."""

import json

import pandas as pd
import pytest

from kinject.errors import KinjectError
from kinject.io import write_parquet
from kinject.training.blocks import training_texts
from kinject.training.finetune import eval_loss, train_causal_lm
from kinject.training.hparams import adopt, choose, run_trial
from kinject.training.models import build_tiny_model

TEXTS = [f"The tower of Brumer {i} was raised in {1600 + 3 * i} by the guild of {['masons', 'smiths'][i % 2]}."
         for i in range(20)]
TRAINING = {"block_size": 32, "batch_size": 4, "per_device_batch_size": 4, "seed": 1}


def test_choose_takes_the_lowest_validation_loss_over_lrs_and_epochs(tmp_path):
    paths = []
    for lr, losses in [(1e-5, [3.0, 2.9, 2.95]), (5e-5, [2.8, 2.5, 2.7]), (1e-6, [3.5, 3.4, 3.3])]:
        paths.append(tmp_path / f"lr{lr:g}.json")
        paths[-1].write_text(json.dumps({"lr": lr, "val_loss_per_epoch": losses}))
    assert choose(paths, tmp_path / "chosen.json") == {"lr": 5e-5, "epochs": 2, "val_loss": 2.5,
                                                         "lr_at_edge": "highest"}
    assert json.loads((tmp_path / "chosen.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("best, edge", [(1e-6, "lowest"), (1e-5, None), (5e-5, "highest")])
def test_a_rate_chosen_at_either_end_of_the_grid_is_flagged(tmp_path, caplog, best, edge):
    """Every method's search (full, LoRA, ...) goes through choose: the flag and its warning are the same."""
    paths = []
    for lr in (1e-5, 5e-5, 1e-6):
        paths.append(tmp_path / f"lr{lr:g}.json")
        paths[-1].write_text(json.dumps({"lr": lr, "val_loss_per_epoch": [2.0 if lr == best else 3.0]}))
    assert choose(paths, tmp_path / "chosen.json")["lr_at_edge"] == edge
    assert ("a better one may lie beyond them" in caplog.text) == (edge is not None)
    one = choose(paths[:1], tmp_path / "one.json")  # a grid of one rate has no edge to flag
    assert one["lr_at_edge"] is None


def test_choose_rejects_a_broken_trial(tmp_path):
    bad = tmp_path / "lr1e-05.json"
    bad.write_text("{}")
    with pytest.raises(KinjectError, match="lr1e-05.json: not a hyper-parameter trial"):
        choose([bad], tmp_path / "chosen.json")
    assert not (tmp_path / "chosen.json").exists()


def _tiny(tmp_path):
    base = tmp_path / "base"
    build_tiny_model(TEXTS, base, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                     max_position_embeddings=128, seed=0)
    write_parquet(tmp_path / "train.parquet", pd.DataFrame({"text": TEXTS}))
    write_parquet(tmp_path / "val.parquet", pd.DataFrame({"text": [t.replace("was raised", "went up") for t in TEXTS]}))
    return base


def test_trial_keeps_the_model_of_its_best_epoch_which_is_the_validated_model(tmp_path):
    base = _tiny(tmp_path)
    trial = run_trial(base, tmp_path / "train.parquet", tmp_path / "val.parquet", tmp_path / "lr.json", lr=3e-3,
                      max_epochs=3, work_dir=tmp_path / "work", models=tmp_path / "models", **TRAINING)
    losses = trial["val_loss_per_epoch"]
    assert len(losses) == 3 and losses[1] < losses[0]
    assert json.loads((tmp_path / "lr.json").read_text()) == trial
    best = losses.index(min(losses)) + 1
    kept = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert kept == [f"epoch{best}", "train_loss.csv"]  # only the epoch the search can choose from this trial
    # the kept model is the one validated: its loss on the validation texts is the trial's at that epoch
    val = training_texts(tmp_path / "val.parquet")
    assert eval_loss(tmp_path / "models" / f"epoch{best}", val, block_size=32, batch_size=4) == \
        pytest.approx(losses[best - 1], rel=1e-4)
    rows = pd.read_csv(tmp_path / "models" / "train_loss.csv")
    assert rows["epoch"].max() == pytest.approx(3) and set(rows["learning_rate"]) == {3e-3}  # constant rate
    assert not list((tmp_path / "work").rglob("*.safetensors"))  # the work directory is cleared
    assert not list((tmp_path / "work" / "checkpoints").iterdir())


def test_training_e_epochs_gives_the_model_a_trial_validated_after_epoch_e(tmp_path):
    """The schedule does not depend on the total: 1 epoch of a fresh run == epoch 1 of a 2-epoch trial."""
    base = _tiny(tmp_path)
    trial = run_trial(base, tmp_path / "train.parquet", tmp_path / "val.parquet", tmp_path / "lr.json", lr=1e-4,
                      max_epochs=2, work_dir=tmp_path / "work", models=tmp_path / "models", **TRAINING)
    train_causal_lm(base, TEXTS, tmp_path / "one", tmp_path / "loss.csv", lr=1e-4, epochs=1,
                    work_dir=tmp_path / "work1", **TRAINING)
    val = training_texts(tmp_path / "val.parquet")
    assert eval_loss(tmp_path / "one", val, block_size=32, batch_size=4) == \
        pytest.approx(trial["val_loss_per_epoch"][0], rel=1e-4)


def test_the_chosen_trials_model_becomes_the_set_0_checkpoint_without_a_copy(tmp_path):
    models, trials = [], []
    for lr, losses, best in [(1e-4, [2.0, 1.5], 2), (3e-4, [1.2, 1.4], 1)]:
        d = tmp_path / f"lr{lr:g}"
        (d / f"epoch{best}").mkdir(parents=True)
        (d / f"epoch{best}" / "config.json").write_text(f'{{"lr": {lr}}}')
        (d / f"epoch{best}" / "model.safetensors").write_bytes(b"weights")
        pd.DataFrame({"step": [1, 2, 3, 4], "epoch": [0.5, 1.0, 1.5, 2.0], "loss": [3.0, 2.5, 2.0, 1.8],
                      "learning_rate": [lr] * 4}).to_csv(d / "train_loss.csv", index=False)
        trials.append(tmp_path / f"lr{lr:g}.json")
        trials[-1].write_text(json.dumps({"lr": lr, "val_loss_per_epoch": losses}))
        models.append(d)
    choose(trials, tmp_path / "chosen.json")
    adopt(tmp_path / "chosen.json", trials, models, tmp_path / "checkpoint", tmp_path / "train_loss.csv")
    chosen = tmp_path / "lr0.0003" / "epoch1"
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == ["config.json", "model.safetensors"]
    assert (tmp_path / "checkpoint" / "model.safetensors").stat().st_ino == (chosen / "model.safetensors").stat().st_ino
    loss = pd.read_csv(tmp_path / "train_loss.csv")
    assert list(loss["step"]) == [1, 2] and list(loss["epoch"]) == [0.5, 1.0]  # the trial's rows up to epoch 1


def test_a_chosen_epoch_the_trial_did_not_keep_is_one_line(tmp_path):
    (tmp_path / "lr0.0001" / "epoch2").mkdir(parents=True)
    trial = tmp_path / "lr0.0001.json"
    trial.write_text(json.dumps({"lr": 1e-4, "val_loss_per_epoch": [2.0, 2.5]}))
    (tmp_path / "chosen.json").write_text(json.dumps({"lr": 1e-4, "epochs": 1, "val_loss": 2.0}))
    with pytest.raises(KinjectError, match=r"epoch1: no model saved after epoch 1"):
        adopt(tmp_path / "chosen.json", [trial], [tmp_path / "lr0.0001"], tmp_path / "ckpt", tmp_path / "loss.csv")
    assert not (tmp_path / "ckpt").exists()
