"""Hidden tests of the RNN/LSTM assignment (source/rnn/rnn.ipynb). Never shipped to students.

VanillaRNN and LSTM are compared with torch.nn.RNN (tanh) / torch.nn.LSTM given the same weights, each
sequence of a padded batch run alone at its true length (values and gradients). The classifier is tested
with a torch-built recurrent layer in place of the student's (so a bug in LSTM costs points only there),
and the loops with a torch-built classifier, the reference compute_loss and a recording optimizer/scheduler (the
notebook documents: the scheduler is stepped once per batch, right after optimizer.step()), on batches of unequal
sizes (the loops report means per review). The classifier's dropout is checked in train mode against the
reference under the same replayed masks (stand_ins/dropout.py): the notebook states where it goes. Accuracy is judged from the saved
tokenizer and weights on the IMDB test split, wherever the grader runs (autograder/kit/imdb_grading.py: the sequential
rule on a secret sample); CI's check of the same path on briefly trained weights is tests/test_rnn_training.py.
"""
import dataclasses
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.assignments import assignment_of
from autograder.kit.families import Family, bar_title
from autograder.kit.imdb_grading import graded_rnn_accuracy
from autograder.kit.reference import (Feedback, assert_close, assert_shape, check_dropout, expect_grads, fill_parameters_,
                                  grad_of, replayed_dropout, seeded_randn)
from autograder.kit.requests import call, module, name, needs_grad, stand_in
from autograder.kit.stand_ins.rnn import TorchClassifier, TorchRecurrent

ASSIGNMENT = assignment_of(__file__)  # declared in source/rnn/spec.py: cells, thresholds, forbidden APIs, budget
THRESHOLDS = ASSIGNMENT.spec.thresholds



# -- Part 1: collate_batch ------------------------------------------------------------------------------------
def collate(student, batch, max_length, pad_id):
    result = student.invoke(name("collate_batch"), batch, max_length, pad_id,
                            what=f"collate_batch(<{len(batch)} reviews>, max_length={max_length}, pad_id={pad_id})").value
    if not isinstance(result, list) or len(result) != 3 or not all(isinstance(t, torch.Tensor) for t in result):
        raise Feedback("collate_batch must return three tensors: (tokens, lengths, labels)")
    for tensor, what in zip(result, ("tokens", "lengths", "labels"), strict=True):
        if tensor.dtype != torch.int64:
            raise Feedback(f"collate_batch: {what} has dtype {tensor.dtype}, expected torch.int64 (torch.long)")
    return result


def expected_collate(batch, max_length, pad_id):
    ids = [ids[:max_length] for ids, _ in batch]
    width = max(len(x) for x in ids)
    tokens = torch.tensor([x + [pad_id] * (width - len(x)) for x in ids])
    return tokens, torch.tensor([len(x) for x in ids]), torch.tensor([label for _, label in batch])


COLLATE_CASES = {
    "padding_and_order": ([[[5, 6, 7], 1], [[8], 0], [[9, 10, 11, 12, 13], 1], [[14, 15], 0]], 100, 0),
    "truncation": ([[[1, 2, 3, 4, 5, 6, 7], 0], [[8, 9], 1], [[10, 11, 12, 13], 1]], 4, 0),
    "all_truncated": ([[list(range(3, 13)), 1], [list(range(20, 35)), 0]], 6, 0),
    "pad_value": ([[[4, 4], 1], [[5, 6, 7, 8], 0], [[9], 1]], 10, 3),
    "single_review": ([[[7, 8, 9], 1]], 2, 0),
}


@pytest.mark.cell("collate")
class TestCollate:
    GROUP = "collate_batch"

    @pytest.mark.points(1)
    @pytest.mark.parametrize("case", list(COLLATE_CASES))
    def test_matches_expected_batch(self, student, case):
        """collate_batch pads with pad_id, keeps the order, returns true lengths and labels, truncates to max_length"""
        batch, max_length, pad_id = COLLATE_CASES[case]
        tokens, lengths, labels = collate(student, batch, max_length, pad_id)
        want_tokens, want_lengths, want_labels = expected_collate(batch, max_length, pad_id)
        assert_shape(lengths, tuple(want_lengths.shape), "lengths")
        if not torch.equal(lengths, want_lengths):
            raise Feedback(f"lengths are {lengths.tolist()}, expected {want_lengths.tolist()} (the number of tokens "
                           f"of each review after truncation to max_length={max_length}, in the batch's order)")
        if not torch.equal(labels, want_labels):
            raise Feedback(f"labels are {labels.tolist()}, expected {want_labels.tolist()} (in the batch's order)")
        assert_shape(tokens, tuple(want_tokens.shape), "tokens (B, T), T = the longest length after truncation")
        if not torch.equal(tokens, want_tokens):
            raise Feedback(f"tokens differ from the expected batch for {len(batch)} reviews with max_length={max_length}, "
                           f"pad_id={pad_id}: each row holds the review's first ids, then pad_id, rows in the batch's order")


# -- Parts 2 and 3: VanillaRNN and LSTM ---------------------------------------------------------------------------
def torch_layer(cell: str, input_size: int, hidden_size: int, seed: int) -> nn.Module:
    """The seeded nn.LSTM / nn.RNN (tanh) of the torch_recurrent stand-in."""
    return fill_parameters_(TorchRecurrent(cell, input_size, hidden_size), seed=seed, scale=0.5).layer


def student_weights(cell: str, layer: Any) -> dict:
    """The torch layer's weights in the notebook's layout (x @ W, one bias, gates i, f, g, o); `layer`: an nn.RNN or
    nn.LSTM, or anything with their four weights as attributes (their gradients)."""
    w_ih, w_hh, b = layer.weight_ih_l0.T, layer.weight_hh_l0.T, layer.bias_ih_l0 + layer.bias_hh_l0
    if cell == "lstm":
        return {"W_x": w_ih, "W_h": w_hh, "b": b}
    return {"W_xh": w_ih, "W_hh": w_hh, "b_h": b}


def torch_final_states(layer: nn.Module, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Each sequence run alone at its true length through the torch layer: (B, H)."""
    finals = []
    for b, length in enumerate(lengths):
        _, state = layer(x[b:b + 1, :length])
        finals.append((state[0] if isinstance(state, tuple) else state)[0, 0])
    return torch.stack(finals)


def recurrent_case(student, cell: str, batch: int, steps: int, lengths: list[int], input_size=5, hidden_size=6,
                   seed=0, grad=False):
    cls = "LSTM" if cell == "lstm" else "VanillaRNN"
    layer = torch_layer(cell, input_size, hidden_size, seed)
    x = seeded_randn(batch, steps, input_size, seed=seed + 1)
    lengths_t = torch.tensor(lengths)
    what = f"{cls}({input_size}, {hidden_size}) on a ({batch}, {steps}, {input_size}) batch with lengths {lengths}"
    spec = module(call(cls, input_size, hidden_size), weights=student_weights(cell, layer), grads="layer")
    if not grad:
        result = student.invoke(spec, x, lengths_t, what=what)
        return result, layer, x, None
    g = seeded_randn(batch, hidden_size, seed=seed + 2)
    result = student.invoke(spec, needs_grad(x), lengths_t, backward=((), g), what=what + " (backward)")
    return result, layer, x, g


def check_values(student, cell, batch, steps, lengths, seed):
    result, layer, x, _ = recurrent_case(student, cell, batch, steps, lengths, seed=seed)
    if not isinstance(result.value, torch.Tensor):
        raise Feedback("forward must return a tensor (B, hidden_size)")
    with torch.no_grad():
        expected = torch_final_states(layer, x, lengths)
    assert_close(result.value, expected, "final hidden state (at each sequence's true length)", atol=1e-5)


def check_gradients(student, cell, lengths, seed):
    steps = max(lengths)
    result, layer, x, g = recurrent_case(student, cell, len(lengths), steps, lengths, seed=seed, grad=True)
    x_ref = x.clone().requires_grad_(True)
    torch_final_states(layer, x_ref, lengths).backward(g)
    assert_close(result.input_grads[0], x_ref.grad, "gradient with respect to x (zero on padded steps)", atol=1e-5)
    grads = result.param_grads.get("layer", {})
    expected = student_weights(cell, type("G", (), {"weight_ih_l0": layer.weight_ih_l0.grad, "weight_hh_l0": layer.weight_hh_l0.grad,
                                                    "bias_ih_l0": layer.bias_ih_l0.grad, "bias_hh_l0": torch.zeros_like(layer.bias_hh_l0)}))
    expect_grads(grads, expected, atol=1e-5)


def check_padding_ignored(student, cell, seed):
    """The same sequences with different values in the padded tail, and with extra padding: same result."""
    cls = "LSTM" if cell == "lstm" else "VanillaRNN"
    layer = torch_layer(cell, 4, 5, seed)
    lengths = torch.tensor([2, 6, 1, 4])
    x = seeded_randn(4, 6, 4, seed=seed + 1)
    mask = (torch.arange(6)[None, :] < lengths[:, None]).unsqueeze(2)
    noisy = torch.where(mask, x, 10 * seeded_randn(4, 6, 4, seed=seed + 2))
    longer = torch.cat([noisy, 10 * seeded_randn(4, 5, 4, seed=seed + 3)], dim=1)
    spec = module(call(cls, 4, 5), weights=student_weights(cell, layer))
    outputs = [student.invoke(spec, inputs, lengths, what=f"{cls}(4, 5) on a padded batch with lengths {lengths.tolist()}").value
               for inputs in (x, noisy, longer)]
    assert_close(outputs[1], outputs[0], "final hidden state with different values in the padded steps", atol=1e-6)
    assert_close(outputs[2], outputs[0], "final hidden state with 5 more padded steps", atol=1e-6)


LENGTH_CASES = {"equal_lengths": (3, 7, [7, 7, 7]), "padded": (4, 9, [9, 3, 1, 6]), "long": (2, 40, [40, 23])}


@dataclasses.dataclass(frozen=True)
class RecurrentNames:
    cls: str  # VanillaRNN, LSTM
    kind: str  # "rnn", "lstm" (check_values, check_gradients, check_padding_ignored)
    torch: str  # its torch reference: torch.nn.RNN, torch.nn.LSTM
    activation: str  # what the values test's title adds to the reference: " (tanh)"
    gates: str  # ... and to its weights: " (gates i, f, g, o)"


class RecurrentLayer(Family):
    """A recurrent layer of this notebook: forward(x (B, T, D), lengths) -> (B, hidden_size), against torch's layer
    with the same weights. GRADIENTS: (lengths, seed) of the gradient test; PADDING_SEED: of the padding test."""

    NAMES: RecurrentNames
    GRADIENTS: tuple[list[int], int]
    PADDING_SEED: int

    @pytest.mark.points(1)
    def test_output_shape(self, student):
        """{cls}(input_size, hidden_size) maps (B, T, D) and lengths to (B, hidden_size)"""
        cls = self.NAMES.cls
        result = student.invoke(call(cls, 3, 7), seeded_randn(2, 4, 3), torch.tensor([4, 2]),
                                what=f"{cls}(3, 7) on a (2, 4, 3) batch")
        assert_shape(result.value, (2, 7), f"{cls} output")

    @pytest.mark.points(2)
    def test_matches_torch(self, student, case):
        """{cls} equals {torch}{activation} with the same weights{gates} at each sequence's true length"""
        batch, steps, lengths = LENGTH_CASES[case]
        check_values(student, self.NAMES.kind, batch, steps, lengths, seed=len(lengths) + steps)

    @pytest.mark.points(2)
    def test_gradients_match_torch(self, student):
        """Gradients of {cls} (input and parameters) on a padded batch equal {torch}'s"""
        lengths, seed = self.GRADIENTS
        check_gradients(student, self.NAMES.kind, lengths, seed=seed)

    @pytest.mark.points(2)
    def test_padding_does_not_change_result(self, student):
        """Padded steps (any values, any number of them) do not change {cls}'s result"""
        check_padding_ignored(student, self.NAMES.kind, seed=self.PADDING_SEED)


@pytest.mark.cell("vanilla_rnn")
class TestVanillaRNN(RecurrentLayer):
    GROUP = "VanillaRNN"
    NAMES = RecurrentNames(cls="VanillaRNN", kind="rnn", torch="torch.nn.RNN", activation=" (tanh)", gates="")
    TESTS = ("test_output_shape", "test_matches_torch", "test_gradients_match_torch", "test_padding_does_not_change_result")
    CASES = {"test_matches_torch": ("case", list(LENGTH_CASES))}
    RENAMED = {"test_matches_torch": "test_matches_torch_rnn", "test_gradients_match_torch": "test_gradients_match_torch_rnn"}
    GRADIENTS, PADDING_SEED = ([5, 2, 4], 11), 21


@pytest.mark.cell("lstm")
class TestLSTM(RecurrentLayer):
    GROUP = "LSTM"
    NAMES = RecurrentNames(cls="LSTM", kind="lstm", torch="torch.nn.LSTM", activation="", gates=" (gates i, f, g, o)")
    TESTS = TestVanillaRNN.TESTS
    CASES = TestVanillaRNN.CASES
    POINTS = {"test_matches_torch": 3}
    RENAMED = {"test_matches_torch": "test_matches_torch_lstm", "test_gradients_match_torch": "test_gradients_match_torch_lstm"}
    GRADIENTS, PADDING_SEED = ([3, 6, 1], 12), 22


# -- Part 4: the classifier -----------------------------------------------------------------------------------------
@pytest.mark.cell("classifier")
class TestClassifier:
    GROUP = "SentimentClassifier"

    @pytest.mark.points(2)
    @pytest.mark.parametrize("cell", ["rnn", "lstm"])
    def test_matches_reference_with_torch_recurrent_layer(self, student, cell):
        """SentimentClassifier = embedding -> recurrent layer (with the lengths) -> head, checked with a torch layer as rnn"""
        ref = fill_parameters_(TorchClassifier(30, 6, 8, 3, cell=cell), seed=5, scale=0.5).eval()
        tokens = torch.tensor([[3, 4, 5, 6, 0, 0], [7, 8, 0, 0, 0, 0], [9, 10, 11, 12, 13, 14]])
        lengths = torch.tensor([4, 2, 6])
        spec = module(call("SentimentClassifier", call("ClassifierConfig", vocab_size=30, embed_dim=6, hidden_size=8, cell=cell,
                                                       num_classes=3, dropout=0.0, max_length=6)),
                      substitutes={"rnn": stand_in("torch_recurrent", cell=cell, input_size=6, hidden_size=8)},
                      weights=ref.state_dict())
        result = student.invoke(spec, tokens, lengths, what=f"SentimentClassifier(cell={cell!r})")
        with torch.no_grad():
            assert_close(result.value, ref(tokens, lengths), "classifier logits", atol=1e-5)

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, the classifier drops the embeddings and the final hidden state in train mode, nothing in eval mode"""
        p, seed = 0.5, 3
        ref = fill_parameters_(TorchClassifier(30, 6, 8, 3), seed=6, scale=0.5).train()
        tokens = torch.tensor([[3, 4, 5, 6, 0], [7, 8, 9, 10, 11], [12, 13, 0, 0, 0]])
        lengths = torch.tensor([4, 5, 2])
        classifier = module(call("SentimentClassifier", call("ClassifierConfig", vocab_size=30, embed_dim=6, hidden_size=8,
                                                             cell="lstm", num_classes=3, dropout=p, max_length=5)),
                            substitutes={"rnn": stand_in("torch_recurrent", cell="lstm", input_size=6, hidden_size=8)},
                            weights=ref.state_dict())
        with torch.no_grad():
            expected_eval = ref.head(ref.rnn(ref.embedding(tokens), lengths))
            with replayed_dropout(seed):
                dropped = F.dropout(ref.embedding(tokens), p, True)
                expected_train = ref.head(F.dropout(ref.rnn(dropped, lengths), p, True))
        check_dropout(student, classifier, (tokens, lengths), p=p, seed=seed, expected_eval=expected_eval,
                      expected_train=expected_train, calls=2, what=f"SentimentClassifier(dropout={p})",
                      where="on the embeddings, then on the recurrent layer's final hidden state")


# -- Part 5: compute_loss -----------------------------------------------------------------------------------------
def loss_case(student, logits, labels, grad=False):
    what = f"compute_loss on ({logits.shape[0]}, {logits.shape[1]}) logits"
    if grad:
        result = student.invoke(name("compute_loss"), needs_grad(logits), labels, backward=((0,), None), what=what)
    else:
        result = student.invoke(name("compute_loss"), logits, labels, what=what)
    value = result.value
    if not isinstance(value, list) or len(value) != 2:
        raise Feedback("compute_loss must return (mean loss, number correct)")
    loss = value[0]
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise Feedback("compute_loss: the loss must be a tensor with one value (the mean over the batch)")
    return loss.reshape(()), value[1], result


@pytest.mark.cell("loss")
class TestLoss:
    GROUP = "compute_loss"

    @pytest.mark.points(2)
    @pytest.mark.parametrize("batch,classes", [(8, 2), (5, 7)])
    def test_matches_cross_entropy(self, student, batch, classes):
        """compute_loss equals F.cross_entropy (mean over the batch), and so does its gradient"""
        logits = 3 * seeded_randn(batch, classes, seed=batch)
        labels = torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(classes))
        loss, _, result = loss_case(student, logits, labels, grad=True)
        x = logits.clone().requires_grad_(True)
        expected = F.cross_entropy(x, labels)
        expected.backward()
        assert_close(loss, expected.detach(), "mean loss", atol=1e-6)
        assert_close(result.input_grads[0], grad_of(x), "gradient of the loss with respect to the logits", atol=1e-6)

    @pytest.mark.points(2)
    def test_large_logits(self, student):
        """compute_loss stays exact for logits of size 1e4, where exp() overflows (use logsumexp)"""
        logits = torch.tensor([[1e4, 0.0], [-1e4, 1e4], [5e3, 5e3 + 1.0], [0.0, 1e4], [3e4, -2e4]])
        labels = torch.tensor([0, 0, 1, 1, 1])
        loss, _, _ = loss_case(student, logits, labels)
        assert_close(loss, F.cross_entropy(logits, labels), "mean loss with logits of size 1e4", rtol=1e-5, atol=1e-3)

    @pytest.mark.points(1)
    def test_counts_correct_predictions(self, student):
        """compute_loss returns the exact number of correct predictions (argmax equals the label)"""
        logits = seeded_randn(37, 4, seed=3)
        labels = torch.randint(0, 4, (37,), generator=torch.Generator().manual_seed(4))
        _, correct, _ = loss_case(student, logits, labels)
        if isinstance(correct, torch.Tensor) and correct.numel() == 1:
            correct = correct.item()
        want = int((logits.argmax(1) == labels).sum())
        if not isinstance(correct, (int, float)) or correct != want:
            raise Feedback(f"compute_loss counted {correct!r} correct predictions out of 37, expected {want}")


# -- Part 6: the loops -------------------------------------------------------------------------------------------
VOCAB, EMBED, HIDDEN = 40, 8, 12


def fixed_batches(seed: int, sizes: tuple[int, ...] = (6, 6, 6, 6)) -> list:
    """Batches [tokens, lengths, labels] of the given sizes (unequal sizes tell a mean per review from a mean of
    batch means)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for size in sizes:
        lengths = torch.randint(1, 9, (size,), generator=generator)
        tokens = torch.randint(1, VOCAB, (size, int(lengths.max())), generator=generator)
        tokens = torch.where(torch.arange(tokens.shape[1])[None, :] < lengths[:, None], tokens, 0)
        labels = torch.randint(0, 2, (size,), generator=generator)
        batches.append([tokens, lengths, labels])
    return batches


def reference_classifier(seed: int) -> TorchClassifier:
    torch.manual_seed(seed)
    return fill_parameters_(TorchClassifier(VOCAB, EMBED, HIDDEN), seed=seed, scale=0.3)


def mean_of_batch_means(model, batches) -> float:
    """What a loop that averages the batches' mean losses reports (wrong when batches differ in size)."""
    with torch.no_grad():
        return sum(F.cross_entropy(model(tokens, lengths), labels).item() for tokens, lengths, labels in batches) / len(batches)


def sgd_steps(model, batches, lr: float, clear_gradients: bool = True, clip_norm: float | None = None) -> dict:
    """The weights after one plain SGD step per batch on the mean cross-entropy (as train_one_epoch does with a
    constant schedule); clear_gradients=False: gradients of earlier batches left to accumulate; clip_norm: the
    gradients' norm clipped to it before each step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    optimizer.zero_grad()
    for tokens, lengths, labels in batches:
        if clear_gradients:
            optimizer.zero_grad()
        F.cross_entropy(model(tokens, lengths), labels).backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def loss_and_accuracy(model, batches) -> tuple[float, float]:
    with torch.no_grad():
        losses, correct, seen = 0.0, 0, 0
        for tokens, lengths, labels in batches:
            logits = model(tokens, lengths)
            losses += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
    return losses / seen, correct / seen


def report_feedback(function: str, got: list, model, batches) -> None:
    """Feedback unless `got` (what `function` returned) is the mean loss per review and the accuracy of `model`."""
    loss, accuracy = loss_and_accuracy(model, batches)
    got = [float(v.item() if isinstance(v, torch.Tensor) else v) for v in got]
    if abs(got[0] - loss) <= 1e-4 and abs(got[1] - accuracy) <= 1e-6:
        return
    sizes = [len(labels) for _, _, labels in batches]
    hint = ""
    if abs(got[0] - mean_of_batch_means(model, batches)) <= 1e-4:
        hint = (f" Your loss is the mean of the {len(batches)} batches' mean losses, but the batches hold {sizes} reviews: "
                "weigh each batch's mean loss by its number of reviews (the mean per review).")
    raise Feedback(f"{function} returned (loss {got[0]:.5f}, accuracy {got[1]:.4f}) on batches of {sizes} reviews; the "
                   f"model's mean loss per review is {loss:.5f} and its accuracy {accuracy:.4f}.{hint}")


def run_probe(student, batches, epochs, lr, optimizer="adam", seed=0, clip_norm=None):
    model = reference_classifier(seed)
    spec = stand_in("train_loop_probe", train_one_epoch=name("train_one_epoch"),
                    model=stand_in("torch_classifier", vocab_size=VOCAB, embed_dim=EMBED, hidden_size=HIDDEN,
                                   state=dict(model.state_dict())),
                    batches=batches, compute_loss=stand_in("reference_compute_loss"), epochs=epochs, lr=lr,
                    optimizer=optimizer, clip_norm=clip_norm)
    result = student.invoke(spec, what="train_one_epoch with a small LSTM classifier built from torch layers "
                                       "(and the reference compute_loss)").value
    return model, result


@pytest.mark.cell("loops")
class TestLoops:
    GROUP = "Training loops"

    @pytest.mark.points(2)
    def test_scheduler_stepped_once_per_batch_after_optimizer(self, student):
        """train_one_epoch steps the optimizer and then the scheduler once per batch, as the notebook documents"""
        batches = fixed_batches(seed=1, sizes=(6,) * 5)
        _, result = run_probe(student, batches, epochs=2, lr=0.01)
        events = result["events"]
        optimizer_steps, scheduler_steps = events.count("optimizer"), events.count("scheduler")
        if optimizer_steps != 10:
            raise Feedback(f"2 epochs of 5 batches called optimizer.step() {optimizer_steps} times, expected 10 (once per batch)")
        if scheduler_steps != 10:
            raise Feedback(f"2 epochs of 5 batches called scheduler.step() {scheduler_steps} times, expected 10: "
                           "the notebook's schedulers count batches, so step the scheduler once per batch")
        if events != ["optimizer", "scheduler"] * 10:
            raise Feedback("scheduler.step() must come right after optimizer.step() in each batch "
                           f"(the order of calls was {events[:6]}...)")

    @pytest.mark.points(2)
    def test_training_reduces_the_loss(self, student):
        """A few epochs of train_one_epoch on a small fixed set of batches reduce the loss (judged here with the weights it leaves)"""
        batches = fixed_batches(seed=2, sizes=(6, 6, 6))
        model, result = run_probe(student, batches, epochs=8, lr=0.02)
        before, _ = loss_and_accuracy(model, batches)
        model.load_state_dict(result["state"])
        after, _ = loss_and_accuracy(model, batches)
        if not after < 0.5 * before:
            raise Feedback(f"8 epochs of train_one_epoch with Adam (lr 0.02) on 3 fixed batches took the loss from "
                           f"{before:.3f} to {after:.3f}; expected it to fall below half (zero_grad, backward, step?)")
        returned = result["returned"][-1]
        if not (isinstance(returned, list) and len(returned) == 2):
            raise Feedback("train_one_epoch must return (mean loss, accuracy)")

    @pytest.mark.points(2)
    def test_each_step_uses_its_own_batch_gradient(self, student):
        """Each optimizer step follows the gradient of its own batch's mean loss (the gradients are cleared every batch)"""
        batches, lr = fixed_batches(seed=5, sizes=(5, 3, 6, 2)), 0.5
        model, result = run_probe(student, batches, epochs=1, lr=lr, optimizer="sgd", seed=8)
        expected = sgd_steps(reference_classifier(8), batches, lr)
        worst = max(expected, key=lambda k: float((result["state"][k].float() - expected[k]).abs().max()))
        if float((result["state"][worst].float() - expected[worst]).abs().max()) <= 1e-4:
            return
        accumulated = sgd_steps(reference_classifier(8), batches, lr, clear_gradients=False)
        if all(torch.allclose(result["state"][k].float(), accumulated[k], atol=1e-4) for k in accumulated):
            raise Feedback("after 4 batches with plain SGD (lr 0.5), the weights are those of steps on gradients summed over "
                           "all the batches seen so far: the gradients are never cleared (call optimizer.zero_grad() in "
                           "every batch, before backward)")
        raise Feedback(f"after 4 batches with plain SGD (lr 0.5), the weights ({worst}) differ from one step per batch on "
                       "that batch's mean loss (zero_grad, forward, compute_loss, backward, optimizer.step(), scheduler.step())")

    @pytest.mark.points(1)
    def test_gradients_clipped_to_clip_norm(self, student):
        """With clip_norm set, the gradients' total norm is clipped to it before every optimizer step (the recipe sets it)"""
        batches, lr, clip_norm = fixed_batches(seed=6, sizes=(5, 4, 6)), 0.5, 0.05
        _, result = run_probe(student, batches, epochs=1, lr=lr, optimizer="sgd", seed=9, clip_norm=clip_norm)
        norms = result["grad_norms"]
        unclipped = [n for n in norms if n is None or n > clip_norm * (1 + 1e-3)]
        if unclipped:
            raise Feedback(f"with clip_norm={clip_norm}, the gradients' norm at optimizer.step() was "
                           f"{', '.join('none' if n is None else f'{n:.3g}' for n in norms)}: clip it before the step "
                           "(torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm) after backward)")
        expected = sgd_steps(reference_classifier(9), batches, lr, clip_norm=clip_norm)
        worst = max(expected, key=lambda k: float((result["state"][k].float() - expected[k]).abs().max()))
        if float((result["state"][worst].float() - expected[worst]).abs().max()) > 1e-4:
            raise Feedback(f"with clip_norm={clip_norm}, the weights ({worst}) after 3 SGD steps differ from steps on the "
                           "clipped gradients: clip the norm of all the parameters' gradients together, after "
                           "backward and before optimizer.step()")

    @pytest.mark.points(2)
    def test_train_one_epoch_reports_mean_loss_and_accuracy(self, student):
        """train_one_epoch returns the epoch's mean loss per review and accuracy, on batches of unequal sizes (SGD with lr 0: nothing changes)"""
        batches = fixed_batches(seed=3, sizes=(7, 2, 4))
        model, result = run_probe(student, batches, epochs=1, lr=0.0, optimizer="sgd")
        returned = result["returned"][0]
        if not (isinstance(returned, list) and len(returned) == 2):
            raise Feedback("train_one_epoch must return (mean loss, accuracy)")
        report_feedback("train_one_epoch (with a zero learning rate)", returned, model, batches)

    @pytest.mark.points(2)
    def test_evaluate_matches_reference(self, student):
        """evaluate returns the mean loss per review and the accuracy over all batches, of unequal sizes"""
        batches = fixed_batches(seed=4, sizes=(5, 1, 3))
        model = reference_classifier(7)
        value = student.invoke(stand_in("with_reference_loss", function=name("evaluate"), compute_loss=stand_in("reference_compute_loss")),
                               stand_in("torch_classifier", vocab_size=VOCAB, embed_dim=EMBED, hidden_size=HIDDEN,
                                        state=dict(model.state_dict())),
                               batches, what="evaluate with a small LSTM classifier built from torch layers (and the "
                                             "reference compute_loss)").value
        if not isinstance(value, list) or len(value) != 2:
            raise Feedback("evaluate must return (mean loss, accuracy)")
        report_feedback("evaluate", value, model, batches)


# -- Part 8: accuracy ------------------------------------------------------------------------------------------------
class TestAccuracy:
    GROUP = "Accuracy"

    @pytest.mark.points(4)
    @bar_title(THRESHOLDS["rnn"])
    def test_rnn_accuracy(self, student):
        """The saved RNN reaches at least {bar} on the 25 000 IMDB test reviews"""
        graded_rnn_accuracy(student, "rnn_imdb", THRESHOLDS["rnn"])

    @pytest.mark.points(6)
    @bar_title(THRESHOLDS["lstm"])
    def test_lstm_accuracy(self, student):
        """The saved LSTM reaches at least {bar} on the 25 000 IMDB test reviews"""
        graded_rnn_accuracy(student, "lstm_imdb", THRESHOLDS["lstm"])
