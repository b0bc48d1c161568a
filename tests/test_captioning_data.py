"""The captioning assignment's data (dlcourse/captioning.py): the procedurally generated stand-in is deterministic, its
captions follow the grammar and describe the picture, and it needs the image: the reference notebook's model trained
with the image features zeroed (a model that ignores the image) scores clearly worse on validation BLEU than the same
model with them. Also the COCO folder's checksum list."""
import json

import numpy as np
import pytest
import torch

from autograder.assignments import load_assignment
from autograder.samples import run_reference_cells
from dlcourse.captioning import (CAPTION_TOKENS, COLOURS, END, NULL, SHAPES, STANDIN_LABEL, START, CaptionRecipe,
                                 caption_bleu, decode_captions, make_standin, verify_checksums, write_checksums)

MODEL_CELLS = ["setup", "positional_encoding", "masks", "mha", "decoder_layer", "captioning_config",
               "captioning_model", "loss"]


def test_standin_is_deterministic_and_labelled():
    a, b = make_standin(200, 50, seed=3), make_standin.__wrapped__(200, 50, seed=3)
    assert torch.equal(a.train_captions, b.train_captions) and torch.equal(a.val_features, b.val_features)
    assert np.array_equal(a.train_images, b.train_images)
    assert not torch.equal(make_standin(200, 50, seed=4).train_captions, a.train_captions)
    assert a.source == STANDIN_LABEL and "stand-in" in a.source and "not COCO" in a.source
    assert a.train_features.shape == (200, 16, 64) and a.val_features.shape == (50, 16, 64)


def test_captions_follow_the_grammar_and_describe_the_picture():
    data = make_standin()
    captions = data.train_captions
    assert captions.shape[1] == CAPTION_TOKENS and (captions[:, 0] == START).all()
    lengths = (captions != NULL).sum(dim=1)
    assert (captions[torch.arange(len(captions)), lengths - 1] == END).all()  # <END> then only <NULL>
    assert len(data.idx_to_word) < 40
    texts = decode_captions(captions, data.idx_to_word)
    counts = {n: sum(sum(t.split().count(s) for s in SHAPES) == n for t in texts) for n in (1, 2, 3)}
    assert all(c > 200 for c in counts.values()), counts  # one, two and three shapes, all common
    for text, image in zip(texts[:300], data.train_images[:300], strict=True):
        colours = [w for w in text.split() if w in COLOURS]
        present = {name for name, rgb in COLOURS.items() if (np.abs(image.astype(int) - rgb).sum(axis=-1) == 0).any()}
        assert set(colours) == present, (text, present)  # the colours named are exactly the colours drawn


@pytest.fixture(scope="module")
def reference():
    return run_reference_cells(load_assignment("captioning"), MODEL_CELLS)


def test_a_model_ignoring_the_image_scores_clearly_worse(reference, monkeypatch, course_threads):
    """Same model, recipe and seed; the blind one sees all-zero features. BLEU on the validation split."""
    monkeypatch.delenv("DLCOURSE_QUICK", raising=False)
    data = make_standin()
    train_features, train_captions = data.split("train")
    val_features, val_captions = data.split("val")
    scores = {}
    for label, train_f, val_f in (("image", train_features, val_features),
                                  ("blind", torch.zeros_like(train_features), torch.zeros_like(val_features))):
        reference["seed_everything"](0)
        config = reference["CaptioningConfig"](vocab_size=len(data.idx_to_word), input_dim=64, d_model=64,
                                               num_heads=4, num_layers=2, d_ff=256)
        model = reference["CaptioningTransformer"](config)
        reference["train_captioner"](model, train_f, train_captions, CaptionRecipe(epochs=8, batch_size=50, lr=1e-3),
                                     reference["temporal_softmax_loss"], log_every=0)
        scores[label] = caption_bleu(model, val_f, val_captions, data.idx_to_word)[0].score
    print(f"validation BLEU [{STANDIN_LABEL}]: with the image {scores['image']:.1f}, ignoring it {scores['blind']:.1f}")
    assert scores["image"] >= scores["blind"] + 10, scores  # measured: 37.5 against 16.2


def test_coco_checksum_list_catches_a_changed_file(tmp_path, monkeypatch):
    import dlcourse.captioning as captioning

    monkeypatch.setattr(captioning, "COCO_FILES", ("a.h5", "b.json"))
    (tmp_path / "a.h5").write_bytes(b"features")
    (tmp_path / "b.json").write_text("{}")
    listing = write_checksums(tmp_path)
    assert len(listing.read_text().splitlines()) == 2
    verify_checksums(tmp_path)
    (tmp_path / "b.json").write_text("{ }")
    with pytest.raises(ValueError, match="b.json"):
        verify_checksums(tmp_path)


def write_tiny_coco(folder, num_train_images=3, num_val_images=2, feature_dim=8):
    """A COCO captioning folder in CS231n's layout and formats (HDF5 captions and PCA features, the vocabulary JSON,
    the image URL lists), with made-up contents: what `load_coco` reads from a real one."""
    import h5py

    words = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "dog", "on", "grass"]
    captions = {"train": [[1, 4, 5, 2, 0], [1, 4, 5, 6, 7], [1, 5, 2, 0, 0], [1, 3, 2, 0, 0]], "val": [[1, 4, 7, 2, 0]]}
    image_idxs = {"train": [0, 1, 2, 2], "val": [1]}
    with h5py.File(folder / "coco2014_captions.h5", "w") as f:
        for split in ("train", "val"):
            f[f"{split}_captions"] = np.array(captions[split], dtype=np.int32)
            f[f"{split}_image_idxs"] = np.array(image_idxs[split], dtype=np.int32)
    (folder / "coco2014_vocab.json").write_text(json.dumps({"idx_to_word": words,
                                                            "word_to_idx": {w: i for i, w in enumerate(words)}}))
    for split, count in (("train", num_train_images), ("val", num_val_images)):
        with h5py.File(folder / f"{split}2014_vgg16_fc7_pca.h5", "w") as f:
            f["features"] = np.arange(count * feature_dim, dtype=np.float32).reshape(count, feature_dim)
        (folder / f"{split}2014_urls.txt").write_text("".join(f"http://images.example/{split}{i}.jpg\n"
                                                              for i in range(count)))
    return captions, image_idxs


def test_coco_folder_in_the_cs231n_layout_loads_and_is_chosen_over_the_stand_in(tmp_path, monkeypatch):
    from dlcourse.captioning import load_captioning, load_coco

    captions, image_idxs = write_tiny_coco(tmp_path)
    monkeypatch.setenv("DLCOURSE_COCO", str(tmp_path))
    write_checksums(tmp_path)
    data = load_captioning("auto")
    assert "COCO" in data.source and "stand-in" not in data.source
    assert data.train_captions.tolist() == captions["train"] and data.val_image_idxs.tolist() == image_idxs["val"]
    features, caps = data.split("train")
    assert features.shape == (4, 1, 8) and caps.shape == (4, 5)  # one feature vector per caption's image
    assert torch.equal(features[3], features[2])  # captions 2 and 3 describe the same image
    assert decode_captions(data.train_captions, data.idx_to_word)[:3] == ["a dog", "a dog on grass", "dog"]
    assert data.val_urls == ["http://images.example/val0.jpg", "http://images.example/val1.jpg"]
    assert load_coco(tmp_path, max_train=2).train_captions.shape == (2, 5)

    with open(tmp_path / "coco2014_vocab.json", "a") as f:
        f.write(" ")  # a changed file: the checksum list written above no longer matches
    with pytest.raises(ValueError, match="coco2014_vocab.json"):
        load_captioning("auto")
