"""The shared course package: public checks, saving models, data splits, the training loop's pieces."""
import dataclasses
import json

import pytest
import torch

from dlcourse import (ClassifierHistory, History, Recipe, TrainRecipe, check_shape, fill_parameters_, load_model_files, rel_error, save_model,
                      seeded_randn)
from dlcourse.data import ImageSplit, random_crop_flip
from dlcourse.export import FORMAT_KEY, FORMAT_VERSION, constructor_arguments
from dlcourse.training import BatchLoss, ShuffledBatches, Trainer, TrainerConfig, lr_at, quick_mode


def test_rel_error_is_zero_for_equal_and_large_for_different():
    x = seeded_randn(3, 4, seed=0)
    assert rel_error(x, x.clone()) == 0.0
    assert rel_error(x, x + 1.0) > 1e-2
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(x, x[:2])


def test_check_shape_names_both_shapes():
    with pytest.raises(AssertionError, match=r"\(2, 3\), expected \(3, 2\)"):
        check_shape(torch.zeros(2, 3), (3, 2))


def test_seeded_helpers_repeat():
    assert torch.equal(seeded_randn(5, seed=3), seeded_randn(5, seed=3))
    a = fill_parameters_(torch.nn.Linear(3, 2), seed=1)
    b = fill_parameters_(torch.nn.Linear(3, 2), seed=1)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_save_model_round_trip(tmp_path):
    @dataclasses.dataclass
    class Config:
        width: int = 3

    model = torch.nn.Linear(3, 2)
    save_model(model, Config(), "m", tmp_path)
    state, config = load_model_files("m", tmp_path)
    assert config == {"width": 3}
    assert torch.equal(state["weight"], model.weight.detach())
    assert json.loads((tmp_path / "m.json").read_text()) == {FORMAT_KEY: FORMAT_VERSION, "width": 3}


def test_saved_configs_without_a_format_still_load_and_unknown_formats_do_not(tmp_path):
    save_model(torch.nn.Linear(3, 2), {"width": 3}, "m", tmp_path)
    (tmp_path / "m.json").write_text(json.dumps({"width": 3}))  # as saved before the format key existed (version 0)
    assert load_model_files("m", tmp_path)[1] == {"width": 3}
    with pytest.raises(ValueError, match="format 99"):
        constructor_arguments({FORMAT_KEY: 99, "width": 3})
    with pytest.raises(ValueError, match="JSON object"):
        constructor_arguments([3])
    with pytest.raises(ValueError, match=FORMAT_KEY):
        save_model(torch.nn.Linear(3, 2), {FORMAT_KEY: 2}, "bad", tmp_path)


def test_configs_saved_before_format_2_read_with_todays_field_names():
    old = {"image_size": 28, "embed_dim": 64, "mlp_dim": 128, "num_heads": 4}
    for version in ({}, {FORMAT_KEY: 1}):  # files of format 0 and 1 carried ViTConfig's widths as embed_dim, mlp_dim
        assert constructor_arguments({**version, **old}, "ViTConfig") == {"image_size": 28, "d_model": 64, "d_ff": 128,
                                                                          "num_heads": 4}
    assert constructor_arguments({FORMAT_KEY: 1, "embed_dim": 8, "ff_dim": 16}, "CaptioningConfig") == {"d_model": 8,
                                                                                                         "d_ff": 16}
    # other configs keep their fields (an RNN's embed_dim is its word-embedding width), and format 2 is read as written
    assert constructor_arguments({FORMAT_KEY: 1, "embed_dim": 8, "hidden_dim": 16}, "RNNConfig") == {"embed_dim": 8,
                                                                                                      "hidden_dim": 16}
    assert constructor_arguments({FORMAT_KEY: 2, "embed_dim": 8}, "ViTConfig") == {"embed_dim": 8}
    assert constructor_arguments({FORMAT_KEY: 1, "embed_dim": 8}) == {"embed_dim": 8}  # no class named: as written


def test_recipes_shrink_one_way_and_histories_share_one_base():
    from dlcourse.bert import FineTuneRecipe
    from dlcourse.rnn import RNNHistory, RNNRecipe
    from dlcourse.translation import Seq2SeqHistory, Seq2SeqRecipe

    for recipe in (TrainRecipe(), RNNRecipe(), Seq2SeqRecipe(), FineTuneRecipe()):
        assert isinstance(recipe, Recipe) and recipe.quick().epochs == 1 and recipe.quick() != recipe
    history = Seq2SeqHistory()
    history.record(train_loss=2.0, val_perplexity=7.0, seconds=1.0)
    assert isinstance(history, History) and issubclass(RNNHistory, History)
    assert history.epoch_line(0, 3) == "epoch 1/3: train loss 2.000, val perplexity 7.00, 1 s"
    with pytest.raises(ValueError, match="val_perplexity"):
        history.record(train_loss=1.0, seconds=1.0)


def test_image_split_normalises_and_subsets():
    images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    split = ImageSplit(images, torch.arange(10), [str(i) for i in range(10)], "fashion_mnist", "test")
    x = split.normalized()
    assert x.dtype == torch.float32 and x.shape == (10, 1, 4, 4)
    assert torch.allclose(x, (images.float() / 255 - 0.2860) / 0.3530)
    small = split.subset(4, seed=0)
    assert len(small) == 4 and "subset of 4" in small.source


def test_random_crop_flip_keeps_shape():
    x = seeded_randn(8, 3, 32, 32)
    assert random_crop_flip(x).shape == x.shape


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] < lrs[9] == 1.0 and lrs[-1] < 0.01


def regression_batches(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g)) for n in (4, 3, 5)]


def test_the_trainer_takes_the_steps_a_hand_written_loop_takes():
    """Scheduled lr, zero_grad, backward, clipping, step, in that order; stopping mid-epoch after total_steps; the
    epoch's loss weighted by the batch sizes and its counts divided by the total weight."""
    from dlcourse.translation import Seq2SeqHistory

    batches = regression_batches()
    config = TrainerConfig(epochs=3, lr=0.5, total_steps=7, warmup_steps=2, clip_norm=0.1)
    torch.manual_seed(0)
    expected = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(expected.parameters(), lr=config.lr, momentum=0.9)
    losses = []
    for step in range(config.total_steps):
        x, y = batches[step % len(batches)]
        loss = torch.nn.functional.mse_loss(expected(x), y)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.total_steps, config.warmup_steps, config.lr)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(expected.parameters(), config.clip_norm)
        optimizer.step()
        losses.append(loss.item())

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    trainer = Trainer(config, model, torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9), batches,
                      lambda batch: BatchLoss(torch.nn.functional.mse_loss(model(batch[0]), batch[1]), len(batch[1])),
                      lambda: {"val_perplexity": 1.0}, Seq2SeqHistory(), log=lambda line: None)
    history = trainer.run()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values(), strict=True))
    assert trainer.taken == 7 and len(history.train_loss) == 3  # 3 + 3 + 1 steps
    assert history.step_loss == losses and history.step_lr == [lr_at(s, 7, 2, 0.5) for s in range(7)]
    sizes = [len(y) for _, y in batches]
    assert history.train_loss[0] == sum(v * n for v, n in zip(losses[:3], sizes, strict=True)) / sum(sizes)
    assert history.train_loss[2] == losses[6]


def test_the_trainer_divides_counts_by_the_weight_and_can_keep_the_lr_constant():
    batches = regression_batches(1)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    lines: list[str] = []

    def forward(batch):
        x, y = batch
        return BatchLoss(torch.nn.functional.mse_loss(model(x), y), len(y), {"train_acc": (y > 0).sum()})

    history = Trainer(TrainerConfig(epochs=2, lr=0.1, total_steps=6, schedule="constant"), model, optimizer, batches,
                      forward, lambda: {"test_acc": 0.5}, ClassifierHistory(), log=lines.append).run()
    positive = sum(int((y > 0).sum()) for _, y in batches) / sum(len(y) for _, y in batches)
    assert history.train_acc == [positive, positive] and history.test_acc == [0.5, 0.5]
    assert optimizer.param_groups[0]["lr"] == 0.1 and len(lines) == 2 and lines[1].startswith("epoch 2/2: loss")


def test_trainer_config_names_what_it_accepts():
    with pytest.raises(ValueError, match="cosine"):
        TrainerConfig(epochs=1, lr=1.0, total_steps=1, schedule="linear")
    with pytest.raises(ValueError, match="bf16"):
        TrainerConfig(epochs=1, lr=1.0, total_steps=1, precision="fp8")


def test_shuffled_batches_cover_every_index_once_per_pass():
    batches = ShuffledBatches(10, 4)
    torch.manual_seed(0)
    first, second = [torch.cat(list(batches)) for _ in range(2)]
    assert len(batches) == 3 and [len(b) for b in batches] == [4, 4, 2]
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10)) and not torch.equal(first, second)


def test_quick_mode_shrinks_recipe(monkeypatch):
    monkeypatch.setenv("DLCOURSE_QUICK", "1")
    assert quick_mode()
    quick = TrainRecipe(epochs=30).quick()
    assert quick.epochs == 1 and quick.train_subset == quick.test_subset == 256


# -- text datasets (dlcourse.text_data), from the local copy ------------------------------------------
def test_imdb_loads_both_splits_with_labels(local_datasets):
    from dlcourse.text_data import load_imdb

    for split in ("train", "test"):
        dataset = load_imdb(split)
        assert len(dataset) == 25_000
        assert dataset.features["label"].names == ["neg", "pos"]
        assert sum(dataset["label"]) == 12_500  # balanced
        assert isinstance(dataset[0]["text"], str) and len(dataset[0]["text"]) > 20


def test_multi30k_pairs_line_up(local_datasets):
    from dlcourse.text_data import load_multi30k

    sizes = {split: len(load_multi30k(split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 29_000, "val": 1_014, "test": 1_000}
    german, english = load_multi30k("val")[0]
    assert german.startswith("Eine Gruppe von Männern") and english.startswith("A group of men")


def test_review_window_reads_the_first_or_the_last_tokens():
    from dlcourse.rnn import review_window, reviews_as_read

    ids = list(range(10))
    assert review_window(ids, 4, "first") == [0, 1, 2, 3] and review_window(ids, 4, "last") == [6, 7, 8, 9]
    assert review_window(ids[:3], 4, "last") == [0, 1, 2]  # a short review is read whole
    assert reviews_as_read([(ids, 1)], 2, "last") == [([8, 9], 1)]
    with pytest.raises(ValueError, match="read must be one of"):
        review_window(ids, 4, "middle")


# -- the RNN assignment's validation split and its use in fit (dlcourse/rnn.py) -----------------------------------
def test_validation_split_is_seeded_disjoint_stratified_and_a_fixed_fraction():
    from dlcourse.rnn import VALIDATION_FRACTION, validation_split

    texts = [f"review {i}" for i in range(1000)]
    labels = [0] * 600 + [1] * 400
    (train, train_labels), (val, val_labels) = validation_split(texts, labels)
    assert len(val) == round(VALIDATION_FRACTION * 1000) and len(train) + len(val) == 1000
    assert not set(train) & set(val) and sorted(train + val) == sorted(texts)  # disjoint, nothing lost
    assert (val_labels.count(0), val_labels.count(1)) == (60, 40)  # the fraction of each label
    assert all(labels[int(t.split()[1])] == y for t, y in zip(train + val, train_labels + val_labels, strict=True))
    assert [int(t.split()[1]) for t in train] == sorted(int(t.split()[1]) for t in train)  # the training order is kept
    assert validation_split(texts, labels) == ((train, train_labels), (val, val_labels))  # the same every time
    assert validation_split(texts, labels, seed=1)[1][0] != val
    with pytest.raises(ValueError, match="between 0 and 1"):
        validation_split(texts, labels, fraction=1.0)
    with pytest.raises(ValueError, match="1000 texts but 999 labels"):
        validation_split(texts, labels[:-1])


def test_fit_evaluates_validation_and_test_separately():
    """fit records each split's numbers in its own column (a split it was not given: NaN, not logged), and the
    hyper-parameter search's call, validation only, runs."""
    import math

    from dlcourse.rnn import RNNRecipe, fit

    def evaluate(model, loader, device="cpu"):  # the accuracy says which split was evaluated: its size / 1000
        return 0.5, len(loader.items) / 1000

    kwargs = dict(max_length=8, collate_fn=lambda batch, max_length, pad_id: batch, evaluate=evaluate,
                  train_one_epoch=lambda model, loader, optimizer, scheduler, device, clip_norm: (1.0, 0.5), log=lambda m: None)
    items = lambda n: [([2, 3], 0)] * n  # noqa: E731
    history = fit(torch.nn.Linear(1, 1), items(50), items(300), RNNRecipe(epochs=2), val_items=items(20), **kwargs)
    assert history.val_acc == [0.02, 0.02] and history.test_acc == [0.3, 0.3]
    assert "val acc 2.00%" in history.summary() and "test acc 30.00%" in history.summary()
    search = fit(torch.nn.Linear(1, 1), items(50), test_items=None, recipe=RNNRecipe(epochs=1), val_items=items(20), **kwargs)
    assert search.val_acc == [0.02] and math.isnan(search.test_acc[0]) and "test" not in search.summary()
    with pytest.raises(ValueError, match="test_items or val_items"):
        fit(torch.nn.Linear(1, 1), items(50), None, RNNRecipe(epochs=1), **kwargs)
