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
CLASSIFIER = {"TestClassifier::test_matches_reference_with_torch_recurrent_layer[rnn]",
              "TestClassifier::test_matches_reference_with_torch_recurrent_layer[lstm]"}
LOSS_VALUES = {"TestLoss::test_matches_cross_entropy[8-2]", "TestLoss::test_matches_cross_entropy[5-7]"}
LOSS_LARGE = {"TestLoss::test_large_logits"}
LOSS_COUNT = {"TestLoss::test_counts_correct_predictions"}
LOOPS = {"TestLoops::test_scheduler_stepped_once_per_batch_after_optimizer", "TestLoops::test_training_reduces_the_loss",
         "TestLoops::test_train_one_epoch_reports_mean_loss_and_accuracy", "TestLoops::test_evaluate_matches_reference"}
ACCURACY = {"TestAccuracy::test_rnn_accuracy", "TestAccuracy::test_lstm_accuracy"}


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
]
