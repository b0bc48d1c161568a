"""Hidden tests of the BERT fine-tuning assignment (source/bert/bert.ipynb). Never shipped to students.

Everything but the accuracy runs offline on CPU with a tiny randomly initialised BertModel and a tokenizer
over a 33-token vocabulary (dlcourse.bert, built in the worker as stand-ins: no download, no files).
The head is the student's own design, so the classifier tests check properties every correct head has
(shape, padding does not change the logits, gradients reach encoder and head), with each pooling, rather than
values; the padding test uses an encoder whose weights make attended padding change the logits a lot. The
training step is tested on a reference classifier (a stand-in: the student's head plays no part) against the
reference loss, with a recording optimizer and scheduler.

The accuracy (>= 85 % on the 25 000 IMDB test reviews) is judged wherever the grader runs, by the sequential
rule on a secret sample (autograder/kit/scoring.py): a clear case is decided within the threshold budget even on a
CPU, a borderline one there is reported "not judged on this grader". It is judged from the files the notebook
saved: the classifier in float16 safetensors, its head settings and the encoder's architecture in
JSON, the tokenizer in one tokenizers-library file. The grader rebuilds SentimentClassifier(encoder, **head)
in the worker (the encoder from the saved architecture, so nothing is downloaded), loads the weights,
tokenises the test split here with the saved tokenizer and gets the logits batch by batch; only this
process holds the labels. Retraining each student's head in the grader would cost GPU hours per class;
saving fp16 weights halves the upload (bert-base: 220 MB instead of 440 MB) at no cost in accuracy.
"""
import math
from itertools import pairwise

import pytest
import torch

from autograder.assignments import assignment_of
from autograder.kit.families import bar_title
from autograder.kit.imdb_grading import graded_imdb
from autograder.kit.reference import Feedback, assert_close, assert_shape
from autograder.kit.requests import call, handle, module, name, stand_in
from autograder.spec import Threshold
from autograder.kit.stand_ins.bert import ReferenceClassifier

ASSIGNMENT = assignment_of(__file__)  # declared in source/bert/spec.py: cells, thresholds, forbidden APIs, budget
THRESHOLDS = ASSIGNMENT.spec.thresholds
SAVED_NAME = "bert_imdb"
RESERVED_CONFIG_KEYS = {"checkpoint", "max_length", "pad_token_id", "encoder_config"}

# Reviews in the tiny vocabulary (dlcourse.bert.TINY_VOCAB); ids: [PAD] 0, [CLS] 2, [SEP] 3.
LONG_REVIEWS = ["the plot was boring, the acting was bad and the film was not fun.",
                "i loved this movie, the acting was great and the plot was fun!",
                "this film is very very very good and the acting is great."]
SHORT_REVIEWS = ["i loved it", "bad movie!", "this film is very good."]


def tiny_classifier(encoder: dict | None = None, **spec) -> dict:
    """The student's SentimentClassifier around a tiny random BERT (`encoder`: its seed and BertConfig overrides)."""
    return module(call("SentimentClassifier", stand_in("tiny_bert", **(encoder or {})), **spec.pop("kwargs", {})), **spec)


# Encoder weights (larger than BERT's initialisation) under which attending to padding changes the logits by about
# the logits' own size: a head or encoder call that ignores attention_mask cannot pass within the tolerance.
PADDING_SENSITIVE = {"seed": 0, "initializer_range": 0.3}
POOLINGS = ["mean", "cls"]


def reference_tokenization(texts: list[str], max_length: int) -> dict:
    from dlcourse.bert import tiny_tokenizer

    return tiny_tokenizer()(texts, truncation=True, padding="max_length", max_length=max_length)


def rows(value, key: str, what: str) -> list[list[int]]:
    """The student's `key` column as a list of lists of ints (lists, tensors or arrays are all fine)."""
    if not isinstance(value, dict) or key not in value:
        raise Feedback(f"{what}: the result has no {key!r} (return the tokenizer's output, a dict with "
                       "input_ids and attention_mask)")
    column = value[key]
    if isinstance(column, torch.Tensor):
        column = column.tolist()
    try:
        return [[int(t) for t in (row.tolist() if isinstance(row, torch.Tensor) else row)] for row in column]
    except (TypeError, ValueError):
        raise Feedback(f"{what}: {key} is not a list of lists of token ids") from None


def tokenize(student, texts: list[str], max_length: int) -> dict:
    result = student.invoke(name("tokenize_batch"), {"text": texts}, stand_in("tiny_bert_tokenizer"), max_length,
                            what=f"tokenize_batch on {len(texts)} reviews, max_length={max_length}")
    return result.value


class TestTokenize:
    GROUP = "Tokenisation"

    @pytest.mark.points(1)
    def test_truncation(self, student):
        """Reviews longer than max_length are truncated to exactly max_length tokens, ending with [SEP]"""
        value = tokenize(student, LONG_REVIEWS, 8)
        ids = rows(value, "input_ids", "tokenize_batch")
        lengths = sorted({len(r) for r in ids})
        if lengths != [8]:
            raise Feedback(f"tokenize_batch: reviews longer than max_length=8 gave rows of length {lengths}: "
                           "truncate every review to max_length tokens")
        if ids != reference_tokenization(LONG_REVIEWS, 8)["input_ids"]:
            raise Feedback("tokenize_batch: the truncated token ids differ from the tokenizer's own truncation "
                           "(keep [CLS], the first tokens and a final [SEP])")

    @pytest.mark.points(1)
    def test_padding(self, student):
        """Short reviews are padded to max_length with [PAD] on the right"""
        value = tokenize(student, SHORT_REVIEWS, 12)
        ids = rows(value, "input_ids", "tokenize_batch")
        lengths = sorted({len(r) for r in ids})
        if lengths != [12]:
            raise Feedback(f"tokenize_batch: short reviews gave rows of length {lengths}, expected all 12 "
                           "(pad every review to max_length, not to the longest in the batch)")
        expected = reference_tokenization(SHORT_REVIEWS, 12)["input_ids"]
        if ids != expected:
            pads_first = any(r[0] == 0 for r in ids)
            raise Feedback("tokenize_batch: the padded token ids differ from the expected ones"
                           + (" (the padding is on the left; BERT's position embeddings expect it on the right)" if pads_first else ""))

    @pytest.mark.points(1)
    def test_attention_mask(self, student):
        """The attention mask is 1 on the real tokens ([CLS] and [SEP] included) and 0 on padding"""
        texts = SHORT_REVIEWS + ["good"]
        value = tokenize(student, texts, 10)
        mask = rows(value, "attention_mask", "tokenize_batch")
        if mask != reference_tokenization(texts, 10)["attention_mask"]:
            raise Feedback("tokenize_batch: attention_mask must be 1 on each real token (from [CLS] to [SEP]) and 0 "
                           "on each [PAD] after it, every row max_length long")


def tiny_batch(lengths: list[int], total: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of shape (B, total): [CLS] random word ids [SEP] then [PAD]s."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), total, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, 0], ids[i, n - 1] = 2, 3
        ids[i, 1:n - 1] = torch.randint(5, 33, (n - 2,), generator=generator)
    return ids, (ids != 0).long()


@pytest.mark.cell("classifier")
class TestClassifier:
    GROUP = "Classification head"

    @pytest.mark.points(1)
    def test_logits_shape(self, student):
        """SentimentClassifier maps (B, T) token ids and mask to (B, 2) logits"""
        ids, mask = tiny_batch([7, 12, 5], 12, seed=1)
        result = student.invoke(tiny_classifier(), ids, mask, what="SentimentClassifier on a (3, 12) batch")
        if not isinstance(result.value, torch.Tensor):
            raise Feedback("SentimentClassifier.forward must return a tensor of logits")
        assert_shape(result.value, (3, 2), "SentimentClassifier logits")

    @pytest.mark.points(1)
    @pytest.mark.parametrize("pooling", POOLINGS)
    def test_padding_does_not_change_logits(self, student, pooling):
        """Padding does not change a review's logits (the head and the encoder use the attention mask), with each pooling"""
        short_ids, short_mask = tiny_batch([6, 11], 11, seed=2)   # the longer review fills its row
        long_ids, long_mask = tiny_batch([6, 11], 40, seed=2)     # the same two reviews, padded to 40
        kept = f"padding_test_{pooling}"
        built = tiny_classifier(encoder=PADDING_SENSITIVE, kwargs={"pooling": pooling}, keep_as=kept)
        what = f"SentimentClassifier(pooling={pooling!r})"
        first = student.invoke(built, short_ids, short_mask, what=f"{what} on two reviews padded to 11 tokens").value
        second = student.invoke(handle(kept), long_ids, long_mask, what=f"{what} on the same reviews padded to 40 tokens").value
        alone = student.invoke(handle(kept), short_ids[:1, :6], short_mask[:1, :6],
                               what=f"{what} on the shorter review without padding").value
        for value in (first, second, alone):
            if not isinstance(value, torch.Tensor) or value.shape[-1] != 2:
                raise Feedback("SentimentClassifier.forward must return (B, 2) logits")
        hint = " (pass attention_mask to the encoder, and let only real tokens into the pooling)"
        assert_close(second, first, f"{what}: logits of the same reviews padded to 40 instead of 11 tokens{hint}",
                     rtol=1e-3, atol=1e-4)
        assert_close(alone, first[:1], f"{what}: logits of a review alone (no padding) and in a padded batch{hint}",
                     rtol=1e-3, atol=1e-4)

    @pytest.mark.points(1)
    def test_cls_pooling_reads_the_cls_token(self, student):
        """With pooling="cls" the logits come from the [CLS] position (the first), whatever follows it"""
        # An encoder without layers: position t's hidden state depends only on the token there and t, so reviews that
        # share [CLS] share its hidden state, while their last real token ([SEP]) and last position lie elsewhere.
        first_ids, first_mask = tiny_batch([6, 9], 12, seed=4)
        second_ids, second_mask = tiny_batch([10, 4], 10, seed=5)  # (and padded to another length)
        built = tiny_classifier(encoder={"seed": 1, "num_hidden_layers": 0}, kwargs={"pooling": "cls"}, keep_as="cls_test")
        what = 'SentimentClassifier(pooling="cls") with an encoder of no layers'
        first = student.invoke(built, first_ids, first_mask, what=what).value
        second = student.invoke(handle("cls_test"), second_ids, second_mask, what=what).value
        for value in (first, second):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (2, 2):
                raise Feedback("SentimentClassifier.forward must return (B, 2) logits")
        assert_close(second, first, f"{what}: logits of reviews that differ after their first token (the [CLS] "
                     "token, hidden[:, 0], is what cls pooling reads; not the last real token)", rtol=1e-3, atol=1e-4)

    @pytest.mark.points(1)
    @pytest.mark.parametrize("pooling", POOLINGS)
    def test_gradients_reach_encoder_and_head(self, student, pooling):
        """The loss gradient reaches the encoder (embeddings and last layer) and the head, with each pooling"""
        ids, mask = tiny_batch([9, 5], 9, seed=3)
        g = torch.tensor([[1.0, -1.0], [-0.5, 2.0]])
        result = student.invoke(tiny_classifier(kwargs={"pooling": pooling}, grads="classifier"), ids, mask, backward=((), g),
                                what=f"SentimentClassifier(pooling={pooling!r}) backward")
        grads = result.param_grads.get("classifier", {})
        nonzero = {n for n, v in grads.items() if v.abs().sum() > 0}
        encoder = [n for n in nonzero if n.startswith("encoder.")]
        if "encoder.embeddings.word_embeddings.weight" not in nonzero:
            raise Feedback("no gradient reached the encoder's word embeddings: is the encoder used in forward "
                           "(and not frozen or run under torch.no_grad())?")
        if not any(n.startswith("encoder.encoder.layer.1.") for n in encoder):
            raise Feedback("no gradient reached the encoder's last layer: classify from the encoder's output")
        if not [n for n in nonzero if not n.startswith("encoder.")]:
            raise Feedback("no gradient reached the head (the parameters outside `encoder`): is it used in forward?")


class TestFreeze:
    GROUP = "Freezing"

    @pytest.mark.points(1)
    def test_freezes_exactly_the_encoder(self, student):
        """freeze_encoder turns off the gradients of every encoder parameter and of nothing else, and returns the model"""
        returned = student.invoke(name("freeze_encoder"), tiny_classifier(keep_as="frozen"), what="freeze_encoder").value
        if returned != {"$module": "SentimentClassifier"}:
            raise Feedback(f"freeze_encoder returned {returned!r}: return the model it froze (the notebook uses the "
                           "returned model)")
        flags = student.invoke(stand_in("requires_grad_flags"), handle("frozen"), what="reading requires_grad").value
        still = sorted(n for n, on in flags.items() if n.startswith("encoder.") and on)
        frozen_head = sorted(n for n, on in flags.items() if not n.startswith("encoder.") and not on)
        if still:
            raise Feedback(f"after freeze_encoder, {len(still)} encoder parameters still require gradients (e.g. {still[0]})")
        if frozen_head:
            raise Feedback(f"freeze_encoder also froze the head: {', '.join(frozen_head[:4])} no longer require gradients")


TRAIN_REVIEWS = [([2, 18, 20, 7, 8, 3], 1), ([2, 18, 21, 7, 8, 3], 0), ([2, 5, 9, 10, 12, 3], 1),
                 ([2, 5, 9, 10, 15, 3], 0), ([2, 19, 11, 17, 13, 30, 3], 1), ([2, 19, 11, 26, 3], 0),
                 ([2, 5, 23, 10, 27, 3], 1), ([2, 5, 22, 10, 14, 3], 0)]


def train_batch() -> dict:
    ids = torch.zeros(len(TRAIN_REVIEWS), 8, dtype=torch.long)
    for i, (tokens, _) in enumerate(TRAIN_REVIEWS):
        ids[i, :len(tokens)] = torch.tensor(tokens)
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "label": torch.tensor([y for _, y in TRAIN_REVIEWS])}


class TestTraining:
    GROUP = "Training"

    @pytest.mark.points(2)
    def test_training_step_matches_reference_step(self, student):
        """training_step returns the batch's mean cross-entropy, backpropagates, steps the optimizer then the scheduler and clears the gradients (on a reference classifier)"""
        steps = 3
        value = student.invoke(stand_in("training_step_probe", training_step=name("training_step"),
                                        model=stand_in("reference_bert_classifier", seed=1), batch=train_batch(), steps=steps),
                               what=f"{steps} calls of training_step on a reference classifier (SGD with learning rate 0)").value
        losses, events, norms = value["losses"], value["events"], value["grad_norms"]
        batch = train_batch()
        with torch.no_grad():  # the same seeded classifier here (no dropout, so train mode changes nothing)
            logits = ReferenceClassifier(seed=1).train()(batch["input_ids"], batch["attention_mask"])
        reference = float(torch.nn.functional.cross_entropy(logits.float(), batch["label"]))
        if not all(isinstance(x, float) and math.isfinite(x) for x in losses):
            raise Feedback(f"training_step returned {losses[0]!r}: return the loss as a finite Python float (loss.item())")
        if not all(abs(x - reference) <= 1e-3 + 2e-2 * reference for x in losses):
            raise Feedback(f"training_step returned the loss {losses[0]:.4f}; the mean cross-entropy of the batch's logits "
                           f"(F.cross_entropy(logits, labels), in float32) is {reference:.4f}")
        if events.count("optimizer") != steps:
            raise Feedback(f"{steps} calls of training_step called optimizer.step() {events.count('optimizer')} times: "
                           "call it once per step")
        if events.count("scheduler") != steps:
            raise Feedback(f"{steps} calls of training_step called scheduler.step() {events.count('scheduler')} times: call "
                           "it once per step, after optimizer.step() (with the notebook's warm-up, a schedule that never "
                           "steps keeps the learning rate at 0 and nothing trains)")
        if events != ["optimizer", "scheduler"] * steps:
            raise Feedback(f"scheduler.step() must come right after optimizer.step() (the order of calls was {events})")
        if any(n is None or n == 0.0 for n in norms):
            raise Feedback("at optimizer.step() the parameters had no gradient: call optimizer.zero_grad() before "
                           "loss.backward() (not between backward and step, which clears the gradient just computed), "
                           "and loss.backward() before optimizer.step()")
        if any(n > 1.5 * norms[0] for n in norms[1:]):
            growth = ", ".join(f"{n / norms[0]:.1f}x" for n in norms)
            raise Feedback(f"with the weights unchanged (learning rate 0), the gradients at each optimizer.step() were "
                           f"{growth} those of the first step: they are never cleared (call optimizer.zero_grad() in "
                           "every step)")

    @pytest.mark.points(1)
    def test_optimizer_and_linear_warmup_schedule(self, student):
        """create_optimizer_and_scheduler gives AdamW with a linear warm-up to lr, then a linear decay to 0"""
        lr, steps = 1e-3, 10
        result = student.invoke(stand_in("training_steps_runner"), stand_in("reference_bert_classifier", seed=2),
                                steps=steps, lr=lr,
                                create_optimizer_and_scheduler=name("create_optimizer_and_scheduler"), warmup_ratio=0.3,
                                what="create_optimizer_and_scheduler(lr=1e-3, num_training_steps=10, warmup_ratio=0.3)")
        if not result.value["is_adamw"]:
            raise Feedback(f"the optimizer is {result.value['optimizer']}, expected torch.optim.AdamW")
        lrs = result.value["lrs"]  # in effect at steps 0..9, then after the last step
        peak = max(range(len(lrs)), key=lambda i: lrs[i])
        problems = []
        if abs(lrs[peak] - lr) > 0.02 * lr:
            problems.append(f"the highest learning rate is {lrs[peak]:.3g}, expected lr = {lr:g}")
        if not 2 <= peak <= 4:
            problems.append(f"the peak comes at step {peak}, expected at the end of the warm-up (step 3)")
        if lrs[0] > 0.5 * lr:
            problems.append(f"the first step already uses {lrs[0]:.3g}: the warm-up should start near 0")
        if any(b < a - 1e-12 for a, b in pairwise(lrs[:peak + 1])) or any(b > a + 1e-12 for a, b in pairwise(lrs[peak:])):
            problems.append("the learning rate should only rise during the warm-up and only fall after it")
        if lrs[-1] > 0.05 * lr:
            problems.append(f"after the last step the learning rate is {lrs[-1]:.3g}, expected 0")
        if problems:
            raise Feedback("learning-rate schedule: " + "; ".join(problems))


def graded_bert_accuracy(student, saved_name: str = SAVED_NAME, threshold: Threshold = THRESHOLDS["imdb"],
                         limit: int | None = None, batch_size: int = 250) -> float:
    """Rebuild the saved classifier in the worker, tokenise the IMDB test split here with the saved tokenizer,
    get the logits batch by batch and score them here. Records the accuracy in student.notes; raises Feedback
    below `threshold`. `limit` takes the first reviews of a fixed shuffle (the project's own CPU test)."""
    from dlcourse.bert import tokenize_for_grading
    from dlcourse.text_data import imdb_source, load_imdb

    config, weights = student.saved_model(saved_name)
    tokenizer = student.saved_tokenizer(f"{saved_name}_tokenizer.json", "the cell that saves the model")
    missing = sorted(RESERVED_CONFIG_KEYS - set(config) - {"checkpoint"})
    if missing:
        raise Feedback(f"{saved_name}.json lacks {', '.join(missing)}: save the model with save_sentiment_model")
    max_length, pad_token_id = config["max_length"], config["pad_token_id"]
    if not (isinstance(max_length, int) and 8 <= max_length <= 512 and isinstance(pad_token_id, int)):
        raise Feedback(f"{saved_name}.json: max_length must be an int from 8 to 512 and pad_token_id an int")
    head_config = {k: v for k, v in config.items() if k not in RESERVED_CONFIG_KEYS}

    test = load_imdb("test")
    if limit:
        test = test.shuffle(seed=0).select(range(limit))
    try:
        ids = tokenize_for_grading(list(test["text"]), tokenizer, max_length)
    except Exception as exc:  # noqa: BLE001  (a corrupt tokenizer file is the student's problem)
        raise Feedback(f"{saved_name}_tokenizer.json: could not tokenise the test reviews with it ({type(exc).__name__})") from None

    build = call("SentimentClassifier", stand_in("encoder_from_saved_config", encoder_config=config["encoder_config"]),
                 **head_config)
    return graded_imdb(student, saved_name, build, weights, ids, list(test["label"]), pad_token_id,
                       lambda tokens, lengths: (tokens, (torch.arange(tokens.shape[1]) < lengths[:, None]).long()),
                       f"test reviews of {imdb_source()} (checkpoint {config.get('checkpoint', 'not recorded')}, "
                       f"max_length {max_length})", threshold, batch_size, max_width=max_length)


class TestAccuracy:
    GROUP = "Accuracy"

    @pytest.mark.points(10)
    @bar_title(THRESHOLDS["imdb"])
    def test_imdb_accuracy(self, student):
        """The saved fine-tuned model reaches at least {bar} accuracy on the IMDB test split"""
        graded_bert_accuracy(student)

