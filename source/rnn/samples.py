"""Sample submissions of the RNN assignment and the tests each must fail (see autograder/samples/__init__.py).

Both IMDB thresholds (RNN ≥ 70 %, LSTM ≥ 80 % on the 25 000 test reviews) are judged on every grader. The
reference carries trained weights only where CUDA is: there its training cells (the notebook's own, full
recipes) run before grading; on a CPU they take far longer than a demo should (the RNN ~6 min, the LSTM hours:
benchmarks/recipes.py), so there the reference fails both thresholds too: no reference weights in this demo.
CI's check of the training and grading path is tests/test_rnn_training.py. Every other sample carries no
weights and fails the accuracy tests ("not in the submission").
"""
import torch

from autograder.samples import Sample

COLLATE = {f"TestCollate::test_matches_expected_batch[{c}]" for c in
           ("padding_and_order", "truncation", "all_truncated", "pad_value", "single_review")}
LENGTH_CASES = ("equal_lengths", "padded", "long")
RNN_SHAPE = {"TestVanillaRNN::test_output_shape"}
RNN_VALUES = {f"TestVanillaRNN::test_matches_torch_rnn[{c}]" for c in LENGTH_CASES}
RNN_REST = {"TestVanillaRNN::test_gradients_match_torch_rnn", "TestVanillaRNN::test_padding_does_not_change_result"}
LSTM_SHAPE = {"TestLSTM::test_output_shape"}
LSTM_VALUES = {f"TestLSTM::test_matches_torch_lstm[{c}]" for c in LENGTH_CASES}
LSTM_REST = {"TestLSTM::test_gradients_match_torch_lstm", "TestLSTM::test_padding_does_not_change_result"}
CLASSIFIER_DROPOUT = {"TestClassifier::test_dropout_in_train_mode_only"}
CLASSIFIER = {"TestClassifier::test_matches_reference_with_torch_recurrent_layer[rnn]",
              "TestClassifier::test_matches_reference_with_torch_recurrent_layer[lstm]"} | CLASSIFIER_DROPOUT
LOSS_VALUES = {"TestLoss::test_matches_cross_entropy[8-2]", "TestLoss::test_matches_cross_entropy[5-7]"}
LOSS_LARGE = {"TestLoss::test_large_logits"}
LOSS_COUNT = {"TestLoss::test_counts_correct_predictions"}
CLEARS_GRADIENTS = {"TestLoops::test_each_step_uses_its_own_batch_gradient"}
CLIPS = {"TestLoops::test_gradients_clipped_to_clip_norm"}
EVALUATE = {"TestLoops::test_evaluate_matches_reference"}
LOOPS = {"TestLoops::test_scheduler_stepped_once_per_batch_after_optimizer", "TestLoops::test_training_reduces_the_loss",
         "TestLoops::test_train_one_epoch_reports_mean_loss_and_accuracy"} | CLEARS_GRADIENTS | CLIPS | EVALUATE
ACCURACY = {"TestAccuracy::test_rnn_accuracy", "TestAccuracy::test_lstm_accuracy"}


# Correct code written unlike the reference (fair grading: it must get full marks). Each edit appends the alternative
# definitions at the end of the cell, so that they replace the reference's: torch.nn.utils.rnn.pad_sequence (imported
# by name, and spelled as an attribute: the release forbids only packing), F.dropout with the training flag,
# log_softmax indexed by label with a sum divided by the batch size, and loops that clear the gradients after the
# step and sum tensors per review.
ALTERNATIVE_COLLATE = """


def collate_batch(batch, max_length, pad_id=0):
    from torch.nn.utils.rnn import pad_sequence
    ids = [torch.as_tensor(token_ids, dtype=torch.long)[:max_length] for token_ids, _ in batch]
    if len(ids) > 1:
        tokens = pad_sequence(ids, batch_first=True, padding_value=pad_id)
    else:
        tokens = nn.utils.rnn.pad_sequence(ids, True, pad_id)
    return tokens, torch.tensor([len(x) for x in ids]), torch.tensor([int(label) for _, label in batch])
"""
ALTERNATIVE_CLASSIFIER = """


def _classifier_forward(self, tokens, lengths):
    p = self.config.dropout
    embedded = F.dropout(self.embedding(tokens), p=p, training=self.training)
    return self.head(F.dropout(self.rnn(embedded, lengths), p, self.training))


SentimentClassifier.forward = _classifier_forward
"""
ALTERNATIVE_LOSS = """


def compute_loss(prediction, label):
    picked = torch.log_softmax(prediction, dim=-1)[torch.arange(len(label)), label]
    return -picked.sum() / len(label), (prediction.argmax(-1) == label).sum().item()
"""
# The loops cell defines train_one_epoch, then evaluate: a sample's own evaluate goes before the reference's, renamed.
REFERENCE_EVALUATE = '@torch.no_grad()\ndef evaluate(model, loader, device="cpu"):'
RENAMED_EVALUATE = '@torch.no_grad()\ndef _reference_evaluate(model, loader, device="cpu"):'
MEAN_OF_BATCH_MEANS_EVALUATE = """@torch.no_grad()
def evaluate(model, loader, device="cpu"):
    model.eval()
    losses, correct, seen = [], 0, 0
    for tokens, lengths, labels in loader:
        loss, right = compute_loss(model(tokens.to(device), lengths.to(device)), labels.to(device))
        losses.append(loss.item())
        correct, seen = correct + right, seen + len(labels)
    return sum(losses) / len(losses), correct / seen


"""
ALTERNATIVE_LOOPS = """def train_one_epoch(model, loader, optimizer, scheduler, device="cpu", clip_norm=None):
    model.train()
    summed, correct, seen = [], 0, 0
    for tokens, lengths, labels in loader:
        loss, right = compute_loss(model(tokens.to(device), lengths.to(device)), labels.to(device))
        loss.backward()
        if clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        summed.append(loss.detach() * labels.numel())
        correct, seen = correct + right, seen + labels.numel()
    return (torch.stack(summed).sum() / seen).item(), correct / seen


def evaluate(model, loader, device="cpu"):
    model.eval()
    summed, correct, seen = 0.0, 0, 0
    with torch.inference_mode():
        for tokens, lengths, labels in loader:
            loss, right = compute_loss(model(tokens.to(device), lengths.to(device)), labels.to(device))
            summed, correct, seen = summed + float(loss) * len(labels), correct + right, seen + len(labels)
    return summed / seen, correct / seen


"""

SAMPLES = [
    Sample("reference", "the instructor's solution (with weights trained by its own cells where CUDA is)",
           trained=torch.cuda.is_available(), expect_failed=set() if torch.cuda.is_available() else ACCURACY),
    Sample("untouched_release", "the release notebook as students get it", base="release",
           expect_failed=COLLATE | RNN_SHAPE | RNN_VALUES | RNN_REST | LSTM_SHAPE | LSTM_VALUES | LSTM_REST | CLASSIFIER
           | LOSS_VALUES | LOSS_LARGE | LOSS_COUNT | LOOPS | ACCURACY),
    Sample("bug_rnn_ignores_lengths", "planted bug: VanillaRNN lets padded steps update the state (returns the state "
           "after the last padded step)",
           edits=[("vanilla_rnn", "            h = torch.where(keep, h_new, h)", "            h = h_new")],
           expect_failed={"TestVanillaRNN::test_matches_torch_rnn[padded]", "TestVanillaRNN::test_matches_torch_rnn[long]"}
           | RNN_REST | ACCURACY),
    Sample("bug_lstm_forget_gate", "planted bug: the LSTM's cell update uses the input gate where the forget gate belongs",
           edits=[("lstm", "            c_new = f * c + i * g", "            c_new = i * c + i * g")],
           expect_failed=LSTM_VALUES | {"TestLSTM::test_gradients_match_torch_lstm"} | ACCURACY),
    Sample("bug_loss_naive_softmax", "planted bug: compute_loss takes log(exp(z) / sum exp(z)), which overflows for large logits",
           edits=[("loss", "    log_probs = prediction - torch.logsumexp(prediction, dim=1, keepdim=True)   # (B, C)",
                   "    log_probs = torch.log(prediction.exp() / prediction.exp().sum(dim=1, keepdim=True))")],
           expect_failed=LOSS_LARGE | ACCURACY),
    Sample("bug_torch_lstm_hidden", "planted bug (forbidden API): LSTM.forward runs torch.nn.LSTM, reached through getattr "
           "so that only the run-time tripwire can catch it",
           edits=[("lstm", "        xw = x @ self.W_x + self.b                                # (B, T, 4H), all steps at once",
                   "        getattr(nn, 'LS' + 'TM')(self.input_size, H, batch_first=True)\n"
                   "        xw = x @ self.W_x + self.b                                # (B, T, 4H), all steps at once")],
           expect_failed=LSTM_SHAPE | LSTM_VALUES | LSTM_REST | ACCURACY),
    Sample("alternative_correct", "correct code written unlike the reference",
           trained=torch.cuda.is_available(), expect_failed=set() if torch.cuda.is_available() else ACCURACY,
           edits=[("collate", "    return tokens, lengths, labels", "    return tokens, lengths, labels" + ALTERNATIVE_COLLATE),
                  ("classifier", "        return self.head(self.drop(h))          # (B, num_classes)",
                   "        return self.head(self.drop(h))" + ALTERNATIVE_CLASSIFIER),
                  ("loss", "    return loss, correct", "    return loss, correct" + ALTERNATIVE_LOSS),
                  ("loops", REFERENCE_EVALUATE, ALTERNATIVE_LOOPS + RENAMED_EVALUATE)]),
    # Bugs of independent parts in one sample (each part's test uses reference stand-ins for the others): the
    # summing compute_loss fails only the loss tests (the loops run with the reference compute_loss).
    Sample("bug_dropout_gradients_loss_means", "planted bugs: collate packs with nn.utils.rnn.pack_sequence (forbidden, "
           "spelled as an attribute); the classifier's dropout ignores eval mode; train_one_epoch never clears the "
           "gradients; compute_loss sums over the batch; evaluate averages the batches' mean losses",
           edits=[("collate", "    return tokens, lengths, labels",
                   "    nn.utils.rnn.pack_sequence(ids, enforce_sorted=False)\n    return tokens, lengths, labels"),
                  ("classifier", "        x = self.drop(self.embedding(tokens))   # (B, T, E)",
                   "        x = F.dropout(self.embedding(tokens), self.config.dropout)"),
                  ("classifier", "        return self.head(self.drop(h))", "        return self.head(F.dropout(h, self.config.dropout))"),
                  ("loss", "    loss = -log_probs.gather(1, label.unsqueeze(1)).mean()",
                   "    loss = -log_probs.gather(1, label.unsqueeze(1)).sum()"),
                  ("loops", "        optimizer.zero_grad(set_to_none=True)\n", ""),
                  ("loops", REFERENCE_EVALUATE, MEAN_OF_BATCH_MEANS_EVALUATE + RENAMED_EVALUATE)],
           expect_failed=COLLATE | CLASSIFIER_DROPOUT | LOSS_VALUES | LOSS_LARGE | CLEARS_GRADIENTS | CLIPS | EVALUATE | ACCURACY),
    Sample("bug_clip_norm_ignored", "planted bug: train_one_epoch never clips the gradients, although the recipe sets clip_norm",
           edits=[("loops", "        if clip_norm is not None:\n            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)\n", "")],
           expect_failed=CLIPS | ACCURACY),
]

# Planted bugs of the notebook's public checks (tests/test_public_checks.py reads this list): (the check that must
# catch it, what the bug is, {answer cell: (solution text, buggy text)}).
PUBLIC_CHECK_BUGS = [
    ("collate_check", "reviews cut to their last max_length tokens",
     {"collate": ("[:max_length]", "[-max_length:]")}),
    ("rnn_check", "hidden state of the last time step, padding included",
     {"vanilla_rnn": ("h = torch.where(keep, h_new, h)", "h = h_new")}),
    ("lstm_check", "gates read in the order i, f, o, g",
     {"lstm": ("g = torch.tanh(gates[:, 2 * H:3 * H])", "g = torch.tanh(gates[:, 3 * H:4 * H])")}),
    ("classifier_check", "recurrent layer run over the padding (lengths ignored)",
     {"classifier": ("self.rnn(x, lengths)", "self.rnn(x, torch.full_like(lengths, tokens.shape[1]))")}),
    ("loss_check", "summed instead of averaged over the batch",
     {"loss": (".mean()", ".sum()")}),
    ("loops_check", "mean of the batch means instead of the mean per review",
     {"loops": ("total_loss += loss.item() * len(labels)\n        total_correct += correct\n        seen += len(labels)",
                "total_loss += loss.item()\n        total_correct += correct / len(labels)\n        seen += 1")}),
]
