"""The public checks students run in the notebooks pass on the solution and catch the bugs each part is known for
(order, axis, scale, masking): each planted bug below is one small edit of the solution, of the kind students
make, and the check of its part must fail on it. The checks compare with torch built-ins or small cases worked
out by hand in the notebook, never with the hidden tests' references."""
from __future__ import annotations

import importlib.util

import pytest

from autograder.assignments import list_assignments, load_assignment
from public_checks import check_cells, run_public_checks

# (assignment, the check that must catch it, what the bug is, {answer cell: (solution text, buggy text)})
PLANTED_BUGS = [
    ("vit", "patchify_check", "patches in column-major order",
     {"patchify": ("x.flatten(2).transpose(1, 2)", "x.transpose(2, 3).flatten(2).transpose(1, 2)")}),
    ("vit", "attention_check", "scores scaled by sqrt(D) instead of sqrt(head size)",
     {"attention": ("math.sqrt(self.head_size)", "math.sqrt(D)")}),
    ("vit", "attention_check", "softmax over the queries",
     {"attention": ("scores.softmax(dim=-1)", "scores.softmax(dim=-2)")}),
    ("vit", "attention_check", "heads merged without moving them back next to the head size",
     {"attention": ("(weights @ v).transpose(1, 2).reshape(B, T, D)", "(weights @ v).reshape(B, T, D)")}),
    ("vit", "block_check", "post-norm instead of pre-norm",
     {"block": ("x = x + self.attn(self.norm1(x))", "x = self.norm1(x + self.attn(x))")}),
    ("vit", "vit_check", "class token appended after the patches",
     {"vit": ("torch.cat([cls, x], dim=1)", "torch.cat([x, cls], dim=1)")}),
    ("cnn", "simple_check", "no ReLU after the second convolution",
     {"simple_cnn": ("self.pool(F.relu(self.conv2(x)))", "self.pool(self.conv2(x))")}),
    ("cnn", "inception_check", "branches concatenated in another order",
     {"inception": ("torch.cat([y1, y2, y3, y4], dim=1)", "torch.cat([y1, y3, y2, y4], dim=1)")}),
    ("cnn", "inception_check", "pool branch pads with zeros instead of -inf",
     {"inception": ("self.b4_proj(self.b4_pool(x))",
                    "self.b4_proj(F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, stride=1))")}),
    ("cnn", "residual_check", "ReLU before the addition of the shortcut",
     {"residual": ("return F.relu(out + self.shortcut(x))", "return F.relu(out) + self.shortcut(x)")}),
    ("cnn", "better_check", "a layer that is defined but never used",
     {"better_cnn": ("self.drop = nn.Dropout(config.dropout)",
                     "self.drop = nn.Dropout(config.dropout)\n        self.unused = nn.Linear(4, 4)")}),
    ("transformer", "pe_check", "frequencies with exponent i / d_model instead of 2i / d_model",
     {"positional_encoding": ("-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model",
                              "-torch.arange(0, (d_model + 1) // 2, dtype=torch.float64) / d_model")}),
    ("transformer", "masks_check", "causal mask hides the diagonal",
     {"masks": ("torch.ones(T, T, dtype=torch.bool, device=device).tril()",
                "torch.ones(T, T, dtype=torch.bool, device=device).tril(-1)")}),
    ("transformer", "masks_check", "padding mask True at the padding",
     {"masks": ("(tokens != pad_id)[:, None, None, :]", "(tokens == pad_id)[:, None, None, :]")}),
    ("transformer", "mha_check", "scores scaled by sqrt(d_model)",
     {"mha": ("math.sqrt(self.head_size)", "math.sqrt(D)")}),
    ("transformer", "mha_check", "masked scores filled with 0 instead of a large negative number",
     {"mha": ("torch.finfo(scores.dtype).min)", "0.0)")}),
    ("transformer", "layers_check", "decoder's cross-attention without the source mask",
     {"decoder_layer": ("memory, memory, src_mask)", "memory, memory)")}),
    ("transformer", "transformer_check", "embeddings not scaled by sqrt(d_model)",
     {"transformer": (" * math.sqrt(self.config.d_model)", "")}),
    ("transformer", "greedy_check", "rows that have produced EOS keep going instead of padding",
     {"greedy": ("next_token = next_token.masked_fill(finished, pad_id)", "")}),
    ("seq2seq", "attention_check", "softmax over the batch",
     {"attention": ("softmax(dim=-1)", "softmax(dim=0)")}),
    ("seq2seq", "encoder_check", "the two directions' final states concatenated backward first",
     {"encoder": ("torch.cat([s[0], s[1]], dim=-1)", "torch.cat([s[1], s[0]], dim=-1)")}),
    ("seq2seq", "decoder_check", "context and state concatenated in the other order",
     {"decoder": ("torch.cat([h, context], dim=-1)", "torch.cat([context, h], dim=-1)")}),
    ("seq2seq", "seq2seq_check", "decoder fed the target one step late",
     {"seq2seq": ("token = tgt[:, t] if teacher", "token = tgt[:, t - 1] if teacher")}),
    ("seq2seq", "greedy_check", "rows that have produced EOS keep going instead of padding",
     {"greedy": (".masked_fill(finished, pad_id)", "")}),
    ("rnn", "collate_check", "reviews cut to their last max_length tokens",
     {"collate": ("[:max_length]", "[-max_length:]")}),
    ("rnn", "rnn_check", "hidden state of the last time step, padding included",
     {"vanilla_rnn": ("h = torch.where(keep, h_new, h)", "h = h_new")}),
    ("rnn", "lstm_check", "gates read in the order i, f, o, g",
     {"lstm": ("g = torch.tanh(gates[:, 2 * H:3 * H])", "g = torch.tanh(gates[:, 3 * H:4 * H])")}),
    ("rnn", "classifier_check", "recurrent layer run over the padding (lengths ignored)",
     {"classifier": ("self.rnn(x, lengths)", "self.rnn(x, torch.full_like(lengths, tokens.shape[1]))")}),
    ("rnn", "loss_check", "summed instead of averaged over the batch",
     {"loss": (".mean()", ".sum()")}),
    ("rnn", "loops_check", "mean of the batch means instead of the mean per review",
     {"loops": ("total_loss += loss.item() * len(labels)\n        total_correct += correct\n        seen += len(labels)",
                "total_loss += loss.item()\n        total_correct += correct / len(labels)\n        seen += 1")}),
    ("bert", "tokenize_check", "padded to the longest review, not to max_length",
     {"tokenize": ('padding="max_length"', "padding=True")}),
    ("bert", "classifier_check", "mean pooling over the padding too",
     {"classifier": ("pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)",
                     "pooled = hidden.mean(dim=1)")}),
    ("bert", "classifier_check", "CLS pooling reads the last token",
     {"classifier": ("pooled = hidden[:, 0]", "pooled = hidden[:, -1]")}),
    ("bert", "train_step_check", "scheduler never stepped",
     {"train_step": ("    scheduler.step()\n", "")}),
]


def declared_bugs() -> list:
    """The planted bugs an assignment declares beside its notebook: PUBLIC_CHECK_BUGS in source/<a>/samples.py, a list of
    (check, bug, edit), so that a new assignment needs no line here."""
    bugs = []
    for name in list_assignments():
        spec = importlib.util.spec_from_file_location(f"_public_check_bugs_{name}", load_assignment(name).samples_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        bugs += [(name, check, bug, edit) for check, bug, edit in getattr(module, "PUBLIC_CHECK_BUGS", ())]
    return bugs


PLANTED_BUGS += declared_bugs()


@pytest.mark.parametrize("name", list_assignments())
def test_public_checks_pass_on_the_solution(name):
    results = run_public_checks(name)
    assert list(results) == check_cells(name)
    assert not any(results.values()), {check: failed for check, failed in results.items() if failed}


@pytest.mark.parametrize("name, check, bug, edit", PLANTED_BUGS, ids=[f"{a}-{c}-{b}" for a, c, b, _ in PLANTED_BUGS])
def test_public_check_catches_a_planted_bug(name, check, bug, edit):
    results = run_public_checks(name, edit, until=check)
    assert results[check], f"{check} passes with a planted bug: {bug}"


def test_every_public_check_has_a_planted_bug():
    covered = {(name, check) for name, check, _, _ in PLANTED_BUGS}
    missing = [(name, check) for name in list_assignments() for check in check_cells(name) if (name, check) not in covered]
    assert not missing, f"public checks without a planted bug: {missing}"
