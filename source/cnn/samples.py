"""Sample submissions of the CNN assignment and the tests each must fail (see autograder/samples/__init__.py).

Both accuracy thresholds (SimpleCNN ≥ 50 %, BetterCNN ≥ 70 % on CIFAR-10) are judged on every grader. The
reference carries the SimpleCNN trained by the notebook's own cells (its full recipe takes about a minute on a
CPU); the BetterCNN is trained only where CUDA is (hours on a CPU), so elsewhere its threshold fails for the
reference too: no reference weights in this demo (CI's training check is tests/test_cnn_training.py). Every
other sample carries no weights and fails both accuracy tests ("not in the submission").
"""
import torch

from autograder.samples import Sample

SIMPLE = {"TestSimpleCNN::test_output_shape[1]", "TestSimpleCNN::test_output_shape[5]",
          "TestSimpleCNN::test_layers_and_parameter_count", "TestSimpleCNN::test_values_match_reference",
          "TestSimpleCNN::test_gradients_reach_every_parameter"}
INCEPTION_SHAPE = {"TestInception::test_output_shape[widths0-size0]", "TestInception::test_output_shape[widths1-size1]",
                   "TestInception::test_output_shape[widths2-size2]"}
INCEPTION_VALUES = {"TestInception::test_channel_order", "TestInception::test_values_match_reference[widths0]",
                    "TestInception::test_values_match_reference[widths1]", "TestInception::test_gradients_reach_every_parameter"}
RESIDUAL_IDENTITY = {"TestResidualBlock::test_output_shape[8-8-1-size0]",
                     "TestResidualBlock::test_projection_exactly_when_shapes_change[8-8-1]",
                     "TestResidualBlock::test_identity_plus_residual[6-6-1]",
                     "TestResidualBlock::test_values_match_reference[8-8-1]",
                     "TestResidualBlock::test_gradients_reach_every_parameter[6-6-1]"}
RESIDUAL_PROJECTION = {"TestResidualBlock::test_output_shape[4-8-1-size1]", "TestResidualBlock::test_output_shape[8-16-2-size2]",
                       "TestResidualBlock::test_output_shape[6-6-2-size3]",
                       "TestResidualBlock::test_projection_exactly_when_shapes_change[8-16-1]",
                       "TestResidualBlock::test_projection_exactly_when_shapes_change[8-8-2]",
                       "TestResidualBlock::test_projection_exactly_when_shapes_change[4-12-2]",
                       "TestResidualBlock::test_identity_plus_residual[4-8-2]",
                       "TestResidualBlock::test_values_match_reference[4-8-1]",
                       "TestResidualBlock::test_values_match_reference[6-12-2]",
                       "TestResidualBlock::test_gradients_reach_every_parameter[4-8-2]"}
BETTER_EVAL = {"TestBetterCNN::test_deterministic_in_eval_mode"}
BETTER_RUN = {"TestBetterCNN::test_output_shape", "TestBetterCNN::test_gradients_reach_every_parameter"} | BETTER_EVAL
BETTER = BETTER_RUN | {"TestBetterCNN::test_built_from_residual_blocks_and_inception"}
ACCURACY = {"TestAccuracy::test_simple_cnn_accuracy", "TestAccuracy::test_better_cnn_accuracy"}
# What the reference lacks where no CUDA trained the BetterCNN (see above).
UNTRAINED_HERE = set() if torch.cuda.is_available() else {"TestAccuracy::test_better_cnn_accuracy"}


CONCAT = "        return torch.cat([y1, y2, y3, y4], dim=1)"
PROJECTION_IF = "        if stride != 1 or in_channels != out_channels:"
SIMPLE_RETURN = "        return self.fc3(x)"
RESIDUAL_RETURN = "        return F.relu(out + self.shortcut(x))"
BETTER_RETURN = "        return self.head(self.drop(x))"

# Correct code written unlike the reference (fair grading: it must get full marks). Each edit appends the alternative
# forward at the end of the cell, replacing the reference's: functional pooling and view, the Inception branches
# gathered in a list and concatenated along dim -3, tensor methods, adaptive pooling.
ALTERNATIVE_SIMPLE = SIMPLE_RETURN + """


def _simple_forward(self, images):
    x = F.max_pool2d(self.conv1(images).relu(), kernel_size=2)
    x = F.max_pool2d(torch.relu(self.conv2(x)), 2, 2)
    x = x.view(x.size(0), -1)
    for layer in (self.fc1, self.fc2):
        x = layer(x).clamp(min=0)
    return self.fc3(x)


SimpleCNN.forward = _simple_forward
"""
ALTERNATIVE_INCEPTION = CONCAT + """


def _inception_forward(self, x):
    branches = [self.b1_1x1(x), self.b2_3x3(self.b2_reduce(x).relu()), self.b3_5x5(self.b3_reduce(x).relu()),
                self.b4_proj(self.b4_pool(x))]
    return torch.cat([branch.relu() for branch in branches], dim=-3)


Inception.forward = _inception_forward
"""
ALTERNATIVE_RESIDUAL = RESIDUAL_RETURN + """


def _residual_forward(self, x):
    shortcut = self.shortcut(x)
    return (self.bn2(self.conv2(self.bn1(self.conv1(x)).relu())) + shortcut).relu()


ResidualBlock.forward = _residual_forward
"""
ALTERNATIVE_BETTER = BETTER_RETURN + """


def _better_forward(self, images):
    x = self.inception(self.stage2(self.stage1(self.stem(images))))
    x = F.adaptive_avg_pool2d(self.stage4(self.stage3(x)), 1).flatten(1)
    return self.head(self.drop(x))


BetterCNN.forward = _better_forward
"""

SAMPLES = [
    Sample("reference", "the instructor's solution with the weights its own cells train here (the BetterCNN's only "
           "where CUDA is)", trained=True, expect_failed=UNTRAINED_HERE),
    Sample("untouched_release", "the release notebook as students get it", base="release",
           expect_failed=SIMPLE | INCEPTION_SHAPE | INCEPTION_VALUES | RESIDUAL_IDENTITY | RESIDUAL_PROJECTION | BETTER | ACCURACY),
    Sample("bug_inception_concat_order", "planted bug: Inception concatenates the 3x3 and 5x5 branches in swapped order",
           edits=[("inception", CONCAT, "        return torch.cat([y1, y3, y2, y4], dim=1)")],
           expect_failed=INCEPTION_VALUES | ACCURACY),
    Sample("bug_residual_no_projection", "planted bug: ResidualBlock never projects the shortcut (identity even when "
           "the shapes change); BetterCNN, which relies on it, breaks too",
           edits=[("residual", PROJECTION_IF, "        if False:")],
           expect_failed=RESIDUAL_PROJECTION | BETTER_RUN | ACCURACY),
    Sample("alternative_correct", "correct code written unlike the reference (functional pooling, view, tensor "
           "methods, a list of Inception branches, adaptive pooling)", trained=True, expect_failed=UNTRAINED_HERE,
           edits=[("simple_cnn", SIMPLE_RETURN, ALTERNATIVE_SIMPLE), ("inception", CONCAT, ALTERNATIVE_INCEPTION),
                  ("residual", RESIDUAL_RETURN, ALTERNATIVE_RESIDUAL), ("better_cnn", BETTER_RETURN, ALTERNATIVE_BETTER)]),
    Sample("bug_better_dropout_in_eval", "planted bug: BetterCNN's dropout ignores eval mode (F.dropout without the "
           "training flag)", edits=[("better_cnn", BETTER_RETURN, "        return self.head(F.dropout(x, self.config.dropout))")],
           expect_failed=BETTER_EVAL | ACCURACY),
]

# Planted bugs of the notebook's public checks (tests/test_public_checks.py reads this list): (the check that must
# catch it, what the bug is, {answer cell: (solution text, buggy text)}).
PUBLIC_CHECK_BUGS = [
    ("simple_check", "no ReLU after the second convolution",
     {"simple_cnn": ("self.pool(F.relu(self.conv2(x)))", "self.pool(self.conv2(x))")}),
    ("inception_check", "branches concatenated in another order",
     {"inception": ("torch.cat([y1, y2, y3, y4], dim=1)", "torch.cat([y1, y3, y2, y4], dim=1)")}),
    ("inception_check", "pool branch pads with zeros instead of -inf",
     {"inception": ("self.b4_proj(self.b4_pool(x))",
                    "self.b4_proj(F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, stride=1))")}),
    ("residual_check", "ReLU before the addition of the shortcut",
     {"residual": ("return F.relu(out + self.shortcut(x))", "return F.relu(out) + self.shortcut(x)")}),
    ("better_check", "a layer that is defined but never used",
     {"better_cnn": ("self.drop = nn.Dropout(config.dropout)",
                     "self.drop = nn.Dropout(config.dropout)\n        self.unused = nn.Linear(4, 4)")}),
]
