"""Sample submissions of the ViT assignment and the tests each must fail (see autograder/samples/__init__.py).

Only the reference carries trained weights, so every other sample also fails the accuracy tests
("not in the submission"). Where there is no CUDA GPU the CIFAR-10 test is skipped for all of them.
"""
import torch

from autograder.samples import Sample

PATCHIFY = {"TestPatchify::test_output_shape", "TestPatchify::test_values_match_reference",
            "TestPatchify::test_gradients_match_reference"}
ATTENTION = {"TestAttention::test_output_shape", "TestAttention::test_matches_torch_multihead_attention[16-1]",
             "TestAttention::test_matches_torch_multihead_attention[32-4]",
             "TestAttention::test_matches_torch_multihead_attention[48-6]", "TestAttention::test_gradients_match_torch"}
MLP = {"TestMLP::test_matches_reference"}
BLOCK = {"TestBlock::test_matches_torchvision_encoder_block", "TestBlock::test_residual_gradients"}
VIT = {"TestViT::test_output_shape", "TestViT::test_matches_torchvision_vision_transformer",
       "TestViT::test_gradients_reach_embeddings"}
ACCURACY = {"TestAccuracy::test_fashion_mnist_accuracy", "TestAccuracy::test_cifar10_accuracy"}
CUDA_ONLY = {"TestAccuracy::test_cifar10_accuracy"}  # skipped (not judged) where there is no GPU

# Reference cells run, in this order, to train the reference's weights: the notebook's own code.
# CIFAR-10 is trained only where CUDA is (hours on a CPU), which is also where its threshold is judged.
TRAINING_CELLS = ["setup", "patchify", "attention", "mlp", "block", "vit_config", "vit",
                  "fashion_data", "fashion_hparams", "fashion_train"]
if torch.cuda.is_available():
    TRAINING_CELLS += ["cifar_data", "cifar_hparams", "cifar_train"]

MLP_FIRST_LINE = "        x = self.drop(self.act(self.fc1(x)))"
PATCHIFY_RETURN = "        return x.flatten(2).transpose(1, 2)  # (B, N, D)"

# A line of autograder/hidden_tests/test_vit.py, copied (the sample never reads a file): the feedback must not show it.
HIDDEN_LINE = 'FORBIDDEN_MODULES = ["timm", "torchvision.models", "transformers"]'

SNOOP = '''
import os, socket
from pathlib import Path
import dlcourse
_root = Path(dlcourse.__file__).resolve().parents[1]
LEAKS = []
for _target in [_root / "autograder" / "hidden_tests" / "test_vit.py", _root / "source" / "vit" / "vit.ipynb",
                _root / "autograder" / "judge.py", _root / "build"]:
    try:
        LEAKS.append(_target.read_text()[:20] if _target.is_file() else os.listdir(_target))
    except Exception:
        pass
_own = {str(os.getpid()), str(os.getppid()), "1"}
if any(p.isdigit() and p not in _own for p in os.listdir("/proc")):  # the judge's process (and its memory)
    LEAKS.append("other processes are visible")
try:
    socket.create_connection(("127.0.0.1", 22), timeout=2)
    LEAKS.append("network")
except Exception:
    pass
'''

SAMPLES = [
    Sample("reference", "the instructor's solution with trained weights", trained=True),
    Sample("untouched_release", "the release notebook as students get it", base="release",
           expect_failed=PATCHIFY | ATTENTION | MLP | BLOCK | VIT | ACCURACY),
    Sample("bug_attention_scale", "planted bug: attention scores not divided by sqrt(d_k)",
           edits=[("attention", " / math.sqrt(self.head_size)", "")],
           expect_failed=ATTENTION - {"TestAttention::test_output_shape"} | ACCURACY),
    Sample("hostile_infinite_loop", "MLP.forward never returns",
           edits=[("mlp", MLP_FIRST_LINE, "        while True:\n            pass\n" + MLP_FIRST_LINE)],
           expect_failed=MLP | ACCURACY, expect_status="timeout"),
    Sample("hostile_exit", "Attention.forward calls os._exit(0)",
           edits=[("attention", "        B, T, D = x.shape", "        B, T, D = x.shape\n        os._exit(0)")],
           expect_failed=ATTENTION | ACCURACY, expect_status="crashed"),
    Sample("hostile_allclose", "monkeypatches torch.allclose, torch.equal and torch.testing.assert_close, "
           "and Patchify returns zeros",
           edits=[("patchify", "class Patchify(nn.Module):",
                   "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
                   "torch.testing.assert_close = lambda *a, **k: None\n\nclass Patchify(nn.Module):"),
                  ("patchify", PATCHIFY_RETURN, "        return torch.zeros_like(x.flatten(2).transpose(1, 2))")],
           expect_failed={"TestPatchify::test_values_match_reference", "TestPatchify::test_gradients_match_reference"} | ACCURACY),
    Sample("hostile_snooping", "tries to read the hidden tests, the solution, the grader, other submissions and "
           "other processes, and to open a network connection; its Patchify breaks if any of that works",
           edits=[("patchify", "class Patchify(nn.Module):", SNOOP + "\n\nclass Patchify(nn.Module):"),
                  ("patchify", PATCHIFY_RETURN, "        assert not LEAKS, LEAKS\n" + PATCHIFY_RETURN)],
           expect_failed=ACCURACY, needs_namespaces=True),
    Sample("hostile_stderr_noise", "floods stdout and stderr and warns on every call, otherwise correct",
           edits=[("mlp", MLP_FIRST_LINE,
                   "        import sys, warnings\n        for _ in range(2000):\n"
                   "            print('noise ' * 20, file=sys.stderr)\n            print('more noise ' * 20)\n"
                   "        warnings.warn('a warning on every call')\n" + MLP_FIRST_LINE)],
           expect_failed=ACCURACY),
    Sample("hostile_wrapped_evasion", "Attention computes with scaled_dot_product_attention reached through torch.ops "
           "and __wrapped__ by names the static check cannot read: only the run-time tripwire catches it",
           edits=[("attention", "        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_size)     # (B, nh, T, T)",
                   "        attend = getattr(getattr(torch, ''.join(reversed('spo'))).aten,\n"
                   "                         ''.join(reversed('noitnetta_tcudorp_tod_delacs')))\n"
                   "        attend = getattr(attend, ''.join(reversed('__depparw__')), attend)\n"
                   "        return self.proj(attend(q, k, v).transpose(1, 2).reshape(B, T, D))")],
           expect_failed=ATTENTION | ACCURACY),
    Sample("hostile_feedback_leak", "Attention raises an exception with a 5,000-character message holding a line "
           "of the hidden tests (written here, not read), to carry it into the feedback",
           edits=[("attention", "        B, T, D = x.shape",
                   "        B, T, D = x.shape\n"
                   f"        raise ValueError('L' * 2500 + '\\n' + {HIDDEN_LINE!r} + '\\n' + 'L' * 2500)")],
           expect_failed=ATTENTION | ACCURACY),
]
