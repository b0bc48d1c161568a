"""Thresholds judged from the saved weights in the course's own implementation (autograder/kit/trusted.py): the weights
must be exactly the state dict the notebook's constructors make, and the student's code only earns a note where it
computes something else. The graded samples (tests/test_samples.py) show it end to end: a hash lookup of the public
test images with weights that learned nothing scores chance."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch

from autograder.feedback import Feedback
from autograder.spec import Threshold
from autograder.kit.trusted import compare_with_student, course_model, course_namespace, state_dict_mismatch

CONFIG = {"image_size": 28, "in_channels": 1, "patch_size": 7, "num_classes": 10, "d_model": 32, "depth": 2,
          "num_heads": 4, "d_ff": 64, "dropout": 0.0}


@dataclass
class SavedOnly:
    """What course_model and compare_with_student read of a student: the saved files and the worker's outputs."""

    weights: dict
    config: dict = field(default_factory=lambda: dict(CONFIG))
    worker_outputs: object = None  # a function of the batch's arguments, or a Feedback to raise
    assignment_name: str = "vit"
    policy: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(device="cpu", threads=1))
    notes: dict = field(default_factory=dict)
    call_timeout: float = 20.0

    def saved_model(self, name, config_class=None):
        return dict(self.config), dict(self.weights)

    def saved_model_outputs(self, saved_name, build, weights, batches, timeout=300.0):
        for args in batches:
            if isinstance(self.worker_outputs, Feedback):
                raise self.worker_outputs
            yield self.worker_outputs(*args)


def course_vit():
    namespace = course_namespace("vit")
    torch.manual_seed(0)
    return namespace["ViT"](namespace["ViTConfig"](**CONFIG))


def test_the_course_model_is_the_source_notebooks_solution():
    model = course_vit()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)  # the release's forward raises NotImplementedError


def test_saved_weights_load_into_the_course_model():
    saved = course_vit().state_dict()
    model, config, _ = course_model(SavedOnly(saved), "vit_fashionmnist", "ViT", "ViTConfig")
    assert config == CONFIG and not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_a_model_saved_by_the_release_before_the_rename_still_loads(tmp_path):
    """Format 1 named ViTConfig's widths embed_dim and mlp_dim: a student who saved with that release keeps the marks."""
    from safetensors.torch import save_file

    from dlcourse.export import FORMAT_KEY, load_model_files

    saved = course_vit().state_dict()
    save_file({k: v.contiguous() for k, v in saved.items()}, str(tmp_path / "vit_fashionmnist.safetensors"))
    old = {("embed_dim" if k == "d_model" else "mlp_dim" if k == "d_ff" else k): v for k, v in CONFIG.items()}
    (tmp_path / "vit_fashionmnist.json").write_text(json.dumps({FORMAT_KEY: 1, **old}))

    class SavedFiles(SavedOnly):
        def saved_model(self, name, config_class=None):
            weights, config = load_model_files(name, tmp_path, config_class)
            return config, weights

    model, config, _ = course_model(SavedFiles({}), "vit_fashionmnist", "ViT", "ViTConfig")
    assert config == CONFIG
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_a_state_dict_with_an_extra_buffer_is_refused_with_the_key_named():
    saved = {**course_vit().state_dict(), "blocks.0.attn.mask": torch.ones(17, 17)}
    with pytest.raises(Feedback) as error:
        course_model(SavedOnly(saved), "vit_fashionmnist", "ViT", "ViTConfig")
    message = str(error.value)
    assert "vit_fashionmnist.safetensors" in message and "not made by the constructors: blocks.0.attn.mask" in message
    assert "keep the constructors as given" in message


def test_a_missing_key_and_a_wrong_shape_are_named():
    saved = course_vit().state_dict()
    del saved["head.bias"]
    saved["head.weight"] = torch.zeros(10, 16)
    problems = state_dict_mismatch(course_vit().state_dict(), saved)
    assert problems == ["missing: head.bias", "head.weight has shape (10, 16), the constructor makes (10, 32)"]


def test_a_config_the_constructors_refuse_is_feedback():
    with pytest.raises(Feedback, match="vit_fashionmnist.json: the notebook's ViT cannot be built"):
        course_model(SavedOnly({}, config={**CONFIG, "patch_size": 5}), "vit_fashionmnist", "ViT", "ViTConfig")


@pytest.mark.parametrize("worker,noted", [
    (lambda model: (lambda x: model(x)), False),  # the student's code computes what the course's does
    (lambda model: (lambda x: model(x) + 1e-6), False),  # float noise
    (lambda model: (lambda x: model(x) * 1.1), True),  # a layer bug
    (lambda model: (lambda x: model(x)[:, :5]), True),  # a wrong shape
    (lambda model: Feedback("MLP.forward did not return within 20 s"), True),  # hung, crashed
])
def test_the_students_code_earns_a_note_where_it_disagrees(worker, noted):
    model = course_vit().eval()
    student = SavedOnly(model.state_dict())
    student.worker_outputs = worker(model)
    with torch.no_grad():
        compare_with_student(student, "vit_fashionmnist", {}, {}, model, (torch.randn(8, 1, 28, 28),))
    assert bool(student.notes) == noted, student.notes
    if noted:
        assert "the threshold was computed with the course's implementation" in student.notes["vit_fashionmnist check"]


@dataclass
class SavedWithDecoder(SavedOnly):
    """A student whose greedy decoder (run by compare_decoding in the worker) is `decoder`, a function of the source."""

    decoder: object = None

    def invoke(self, function, build, src, *args, what="", timeout=None, **kwargs):
        return SimpleNamespace(value=self.decoder(src))


def test_the_reversal_threshold_decodes_with_the_course_code_whatever_the_students_decoder_returns():
    from autograder.kit.translation_grading import graded_reversal
    from dlcourse.translation import BOS_ID, EOS_ID, PAD_ID, ReversalTask

    task = ReversalTask()
    config = {"src_vocab_size": task.vocab_size, "tgt_vocab_size": task.vocab_size, "d_model": 16, "num_heads": 2,
              "num_encoder_layers": 1, "num_decoder_layers": 1, "d_ff": 32, "dropout": 0.0, "max_len": 32}
    namespace = course_namespace("transformer")
    torch.manual_seed(0)
    untrained = namespace["Transformer"](namespace["TransformerConfig"](**config)).state_dict()

    def reverse_lookup(src):  # the right answers, without the model
        rows = [[BOS_ID, *row[row != PAD_ID].flip(0).tolist(), EOS_ID] for row in src]
        return torch.tensor([r + [PAD_ID] * (task.max_len + 2 - len(r)) for r in rows])

    bar = Threshold(0.99, test="", reference_eval_s=1)
    student = SavedWithDecoder(untrained, config=config, assignment_name="transformer", decoder=reverse_lookup)
    with pytest.raises(Feedback, match="0.00% of 1,000 held-out sequences are reversed exactly right, below the"):
        graded_reversal(student, "transformer_reverse", "Transformer", "TransformerConfig", "greedy_decode", task, bar,
                        with_lengths=False)  # what the untrained weights decode to, not the lookup's 100 %
    assert "does not decode what the notebook's model and decoding decode" in student.notes["transformer_reverse check"]
    assert "falls short of the bar 99%" in student.notes["transformer_reverse"]

    course = namespace["Transformer"](namespace["TransformerConfig"](**config))
    course.load_state_dict(untrained)
    course.eval()
    same = SavedWithDecoder(untrained, config=config, assignment_name="transformer",
                            decoder=lambda src: namespace["greedy_decode"](course, src, max_len=task.max_len + 2,
                                                                           bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID))
    with pytest.raises(Feedback, match="below the required"):
        graded_reversal(same, "transformer_reverse", "Transformer", "TransformerConfig", "greedy_decode", task, bar,
                        with_lengths=False)
    assert "transformer_reverse check" not in same.notes  # the same decoding: no note


def test_the_multi30k_perplexity_is_the_course_models_whatever_the_forward_returns(local_datasets, monkeypatch):
    """A forward that reads the next decoder input off scores perplexity 1 without a model: graded here, the saved
    (untrained) weights score what the course's Transformer makes of them, and the note names the disagreement."""
    import math

    from autograder.kit.translation_grading import graded_perplexity, multi30k_test_pairs
    from dlcourse.text_data import load_multi30k
    from dlcourse.translation import encode_pairs, evaluate_perplexity, train_multi30k_tokenizer

    monkeypatch.delenv("DLCOURSE_QUICK", raising=False)  # evaluate_perplexity would score only 100 pairs
    tokenizer = train_multi30k_tokenizer(load_multi30k("train"))
    vocab = tokenizer.get_vocab_size()
    config = {"src_vocab_size": vocab, "tgt_vocab_size": vocab, "d_model": 16, "num_heads": 2, "num_encoder_layers": 1,
              "num_decoder_layers": 1, "d_ff": 32, "dropout": 0.0}
    namespace = course_namespace("transformer")
    torch.manual_seed(0)
    course = namespace["Transformer"](namespace["TransformerConfig"](**config)).eval()

    def peek(src, tgt_in):  # the next decoder input (the target), read off the batch
        logits = torch.full((*tgt_in.shape, vocab), -30.0)
        return logits.scatter_(2, tgt_in.roll(-1, dims=1).unsqueeze(-1), 30.0)

    student = SavedOnly(course.state_dict(), config=config, assignment_name="transformer", worker_outputs=peek)
    graded = graded_perplexity(student, "transformer_multi30k", "Transformer", "TransformerConfig", tokenizer,
                               lambda src, tgt_in: (src, tgt_in), Threshold(math.inf, test="", reference_eval_s=8))
    expected = evaluate_perplexity(course, *encode_pairs(tokenizer, multi30k_test_pairs()))
    assert graded == pytest.approx(expected, rel=1e-4) and graded > 1000  # untrained, not the lookup's 1.00
    assert "does not compute what the notebook's model computes" in student.notes["transformer_multi30k check"]
