"""Sample submissions of the ViT assignment and the tests each must fail (see autograder/samples/__init__.py).

Only the reference, alternative_correct, hostile_infinite_loop and hostile_print_500mb carry trained weights (and
hostile_hash_lookup scrambled ones), so every other sample also fails the accuracy tests ("not in the submission"). Both thresholds are judged on every
grader; the CIFAR-10 weights are trained (by the notebook's own cells) only where CUDA is, so elsewhere the CIFAR-10
test fails for every sample, the trained ones included: no reference weights in this demo.
"""
import base64
import zlib

import torch

from autograder.pipeline.results import Status
from autograder.samples import Sample, canaries

PATCHIFY = {"TestPatchify::test_output_shape", "TestPatchify::test_values_match_reference",
            "TestPatchify::test_gradients_match_reference"}
ATTENTION = {"TestAttention::test_output_shape", "TestAttention::test_matches_torch_multihead_attention[16-1]",
             "TestAttention::test_matches_torch_multihead_attention[32-4]",
             "TestAttention::test_matches_torch_multihead_attention[48-6]", "TestAttention::test_gradients_match_torch",
             "TestAttention::test_dropout_in_train_mode_only"}
MLP = {"TestMLP::test_matches_reference", "TestMLP::test_dropout_in_train_mode_only"}
BLOCK = {"TestBlock::test_matches_torchvision_encoder_block", "TestBlock::test_residual_gradients"}
VIT = {"TestViT::test_output_shape", "TestViT::test_matches_torchvision_vision_transformer",
       "TestViT::test_gradients_reach_embeddings", "TestViT::test_position_dropout_in_train_mode_only"}
ACCURACY = {"TestAccuracy::test_fashion_mnist_accuracy", "TestAccuracy::test_cifar10_accuracy"}
# What the trained samples lack where no CUDA trained the CIFAR-10 model (see above).
UNTRAINED_HERE = set() if torch.cuda.is_available() else {"TestAccuracy::test_cifar10_accuracy"}


MLP_FIRST_LINE = "        x = self.drop(self.act(self.fc1(x)))"
PATCHIFY_RETURN = "        return x.flatten(2).transpose(1, 2)  # (B, N, D)"

# A line of autograder/hidden_tests/test_vit.py, copied (the sample never reads a file): the feedback must not show it.
HIDDEN_LINE = 'ref = fill_parameters_(ConvPatchify(1, 7, 8), seed=1)'

SNOOP = '''
import os, socket
from pathlib import Path
import dlcourse
_root = Path(dlcourse.__file__).resolve().parents[1]
LEAKS = []
# the grader's own files: hidden tests, solution notebook, grader, grades; in the Gradescope zip the solution's
# fingerprints, the course's reference cells and the zip's settings instead of the notebook
for _target in [_root / "autograder" / "hidden_tests" / "test_vit.py", _root / "source" / "vit" / "vit.ipynb",
                _root / "autograder" / "judge.py", _root / "build", _root / "source" / "vit" / "fingerprints.json",
                _root / "source" / "vit" / "course_cells.json", _root / "gradescope.json"]:
    try:
        LEAKS.append(_target.read_text()[:20] if _target.is_file() else os.listdir(_target))
    except Exception:
        pass
if os.getpid() == 1:  # a PID namespace of its own (bubblewrap): no other process may even be listed
    if any(p.isdigit() and p != "1" for p in os.listdir("/proc")):
        LEAKS.append("other processes are visible")
else:  # none (the uid backend): the judge that started the worker is listed, its environment and memory unreadable
    for _part in ("environ", "mem"):
        try:
            with open(f"/proc/{os.getppid()}/{_part}", "rb") as _f:
                LEAKS.append(_part + " of the judge: " + repr(_f.read(20)))
        except OSError:
            pass
try:
    socket.create_connection(("127.0.0.1", 22), timeout=2)
    LEAKS.append("network")
except Exception:
    pass
'''

CANARY = canaries.paths()
# Hostile samples that try to leave the sandbox. Each touches only the canary files the project's tests plant
# (autograder/samples/canaries.py), and only when they exist; whatever works ends up in LEAKS, and their
# Patchify then breaks, so an escape costs the sample points the test expects it to keep.
FORGE = f'''
import os
LEAKS = []
_target = {str(CANARY["site_packages"])!r}  # a .pth file: every trusted judge process would run a line of it
if os.path.exists(_target):
    try:
        with open(_target, "w") as _f:
            _f.write("# forged by a sample (a real attack would write an import line here)\\n")
        LEAKS.append("wrote into the virtualenv")
    except OSError:
        pass
'''
WRITE_OUTSIDE = f'''
import os
LEAKS = []
for _target in {[str(CANARY[k]) for k in ("course_package", "build_folder", "second_checkout")]!r}:
    if os.path.exists(_target):
        try:
            with open(_target, "w") as _f:
                _f.write("# overwritten by a sample\\n")
            LEAKS.append("wrote " + _target)
        except OSError:
            pass
with open("scratch.txt", "w") as _f:  # its own working folder is writable
    _f.write("mine")
'''
READ_SECOND_COPY = f'''
LEAKS = []
for _target in {[str(CANARY[k]) for k in ("second_checkout", "build_folder")]!r}:
    try:
        with open(_target) as _f:
            LEAKS.append(_f.read()[:20])
    except OSError:
        pass
'''
CTYPES_ESCAPE = '''
import ctypes, os
LEAKS = []
if ctypes.pythonapi.system(b"exit 0") == 0:
    LEAKS.append("ran a shell")
_pid = ctypes.pythonapi.fork()
if _pid == 0:  # only if the sandbox failed: the child leaves at once
    os._exit(0)
if _pid > 0:
    LEAKS.append("forked")
'''
PRINT_500MB = '''
import sys
_line = "x" * 1023 + "\\n"
for _ in range(500 * 1024):  # 500 MB
    sys.stdout.write(_line)
LEAKS = []
'''


def escape_attempt(name: str, code: str, description: str, **kwargs) -> Sample:
    """A sample whose Patchify cell starts with `code` (which fills LEAKS) and breaks if anything leaked."""
    return Sample(name, description,
                  edits=[("patchify", "class Patchify(nn.Module):", code + "\n\nclass Patchify(nn.Module):"),
                         ("patchify", PATCHIFY_RETURN, "        assert not LEAKS, LEAKS\n" + PATCHIFY_RETURN)],
                  **{"expect_failed": ACCURACY, "needs_sandbox": True, **kwargs})


VIT_RETURN = "        return self.head(x[:, 0])                             # (B, num_classes)"


def hash_lookup() -> str:
    """Code appended to the ViT cell: ViT.forward looks each FashionMNIST test image up in a table of the public
    test set (a hash of the image -> its label), undoing a one-pixel roll first where that finds it (the canary's
    perturbation), and answers with the label; images it does not find get the honest forward. The table is
    embedded in the code (zlib, base64): the notebook reads no file. In the worker this passes the threshold with
    weights that learned nothing, the canary included; the course's implementation scores the weights alone."""
    import hashlib

    from dlcourse.data import load_image_split

    test = load_image_split("fashion_mnist", train=False)
    table = b"".join(hashlib.blake2b(_image_key(image), digest_size=6).digest() + bytes([label])
                     for image, label in zip(test.normalized(), test.labels.tolist(), strict=True))
    packed = base64.b64encode(zlib.compress(table, 9)).decode()
    return VIT_RETURN + f"""


import base64, hashlib, zlib
_TABLE = zlib.decompress(base64.b64decode("{packed}"))
_LABELS = {{_TABLE[i:i + 6]: _TABLE[i + 6] for i in range(0, len(_TABLE), 7)}}
_honest_forward = ViT.forward
_UNROLL = [(0, 0), (-1, -2), (1, -2), (-1, -1), (1, -1)]  # none, then undo a roll down, up, right, left


def _label(image):
    for shift, dim in _UNROLL:
        key = hashlib.blake2b({_IMAGE_KEY}(image.roll(shift, dim) if shift else image), digest_size=6).digest()
        if key in _LABELS:
            return _LABELS[key]
    return None


def _lookup_forward(self, x):
    honest = _honest_forward(self, x)
    if tuple(x.shape[1:]) != (1, 28, 28):
        return honest
    for i, image in enumerate(x):
        label = _label(image)
        if label is not None:
            honest[i] = 10.0 * F.one_hot(torch.tensor(label), 10).float()
    return honest


ViT.forward = _lookup_forward
"""


# The bytes hashed for an image (1, 28, 28 floats), rounded so that the worker's copy hashes the same: the sample's
# code holds this text, and the table is built with the same function.
_IMAGE_KEY = "(lambda image: (image * 1000).round().to(torch.int32).numpy().tobytes())"
_image_key = eval(_IMAGE_KEY, {"torch": torch})  # noqa: S307  (the constant above)

ATTENTION_RETURN = "        return self.proj_drop(self.proj(y))"
MLP_RETURN = "        return self.drop(self.fc2(x))         # (B, T, D)"

# Correct code written unlike the reference (fair grading: it must get full marks). Each edit appends the alternative
# forward at the end of the cell, replacing the reference's: heads split by reshape + permute, scores by einsum,
# F.dropout with the training flag, F.gelu, the class token repeated and the position embedding added in place.
ALTERNATIVE_ATTENTION = ATTENTION_RETURN + """


def _attention_forward(self, x):
    B, T, D = x.shape
    qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]                                   # (B, nh, T, hs)
    scores = torch.einsum("bhqd,bhkd->bhqk", q * self.head_size ** -0.5, k)
    weights = F.dropout(F.softmax(scores, dim=3), p=self.attn_drop.p, training=self.training)
    y = torch.einsum("bhqk,bhkd->bqhd", weights, v).flatten(2)
    return self.proj_drop(self.proj(y))


Attention.forward = _attention_forward
"""
ALTERNATIVE_MLP = MLP_RETURN + """


def _mlp_forward(self, x):
    hidden = F.dropout(F.gelu(self.fc1(x)), self.drop.p, self.training)
    return F.dropout(self.fc2(hidden), self.drop.p, self.training)


MLP.forward = _mlp_forward
"""
ALTERNATIVE_VIT = VIT_RETURN + """


def _vit_forward(self, images):
    x = self.patchify(images)
    x = torch.cat((self.cls_token.repeat(len(images), 1, 1), x), dim=1)
    x += self.pos_embed
    x = self.pos_drop(x)
    for i in range(len(self.blocks)):
        x = self.blocks[i](x)
    return self.head(self.norm(x)[:, 0, :])


ViT.forward = _vit_forward
"""

SAMPLES = [
    Sample("reference", "the instructor's solution with trained weights", trained=True, expect_failed=UNTRAINED_HERE),
    Sample("untouched_release", "the release notebook as students get it", base="release",
           expect_failed=PATCHIFY | ATTENTION | MLP | BLOCK | VIT | ACCURACY),
    Sample("bug_attention_scale", "planted bug: attention scores not divided by sqrt(d_k)",
           edits=[("attention", " / math.sqrt(self.head_size)", "")],
           expect_failed=ATTENTION - {"TestAttention::test_output_shape"} | ACCURACY),
    Sample("alternative_correct", "correct code written unlike the reference (einsum, permute, F.dropout), with the "
           "reference's trained weights", trained=True, expect_failed=UNTRAINED_HERE,
           edits=[("attention", ATTENTION_RETURN, ALTERNATIVE_ATTENTION), ("mlp", MLP_RETURN, ALTERNATIVE_MLP),
                  ("vit", VIT_RETURN, ALTERNATIVE_VIT)]),
    # Dropout bugs of three independent parts in one sample (each part's test uses stand-ins for the others).
    Sample("bug_dropout", "planted bugs: Attention drops the scores before the softmax instead of the probabilities; "
           "MLP's first dropout is F.dropout without the training flag (active in eval mode too); ViT forgets pos_drop",
           edits=[("attention", "        weights = self.attn_drop(scores.softmax(dim=-1))",
                   "        weights = self.attn_drop(scores).softmax(dim=-1)"),
                  ("mlp", "        x = self.drop(self.act(self.fc1(x)))", "        x = F.dropout(self.act(self.fc1(x)), self.drop.p)"),
                  ("vit", "        x = self.pos_drop(x)\n", "")],
           expect_failed={"TestAttention::test_dropout_in_train_mode_only", "TestMLP::test_dropout_in_train_mode_only",
                          "TestViT::test_position_dropout_in_train_mode_only"} | ACCURACY),
    # The first hostile sample is the one `make demo` grades (autograder/deploy/demo.py): the sandbox's showcase.
    Sample("hostile_snooping", "tries to read the hidden tests, the solution, the grader, other submissions and "
           "other processes, and to open a network connection; its Patchify breaks if any of that works",
           edits=[("patchify", "class Patchify(nn.Module):", SNOOP + "\n\nclass Patchify(nn.Module):"),
                  ("patchify", PATCHIFY_RETURN, "        assert not LEAKS, LEAKS\n" + PATCHIFY_RETURN)],
           expect_failed=ACCURACY, needs_sandbox=True),
    Sample("hostile_infinite_loop", "MLP.forward never returns, with trained weights: the accuracy is judged from the "
           "weights in the course's implementation, so it passes (the check of the student's own code on the saved "
           "weights times out, and the feedback notes it)",
           edits=[("mlp", MLP_FIRST_LINE, "        while True:\n            pass\n" + MLP_FIRST_LINE)], trained=True,
           expect_failed=MLP | UNTRAINED_HERE, expect_status=Status.TIMEOUT),
    Sample("hostile_exit", "Attention.forward calls os._exit(0)",
           edits=[("attention", "        B, T, D = x.shape", "        B, T, D = x.shape\n        os._exit(0)")],
           expect_failed=ATTENTION | ACCURACY, expect_status=Status.CRASHED),
    Sample("hostile_allclose", "monkeypatches torch.allclose, torch.equal and torch.testing.assert_close, "
           "and Patchify returns zeros",
           edits=[("patchify", "class Patchify(nn.Module):",
                   "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
                   "torch.testing.assert_close = lambda *a, **k: None\n\nclass Patchify(nn.Module):"),
                  ("patchify", PATCHIFY_RETURN, "        return torch.zeros_like(x.flatten(2).transpose(1, 2))")],
           expect_failed={"TestPatchify::test_values_match_reference", "TestPatchify::test_gradients_match_reference"} | ACCURACY),
    Sample("hostile_stderr_noise", "floods stdout and stderr and warns on every call, otherwise correct",
           edits=[("mlp", MLP_FIRST_LINE,
                   "        import sys, warnings\n        for _ in range(2000):\n"
                   "            print('noise ' * 20, file=sys.stderr)\n            print('more noise ' * 20)\n"
                   "        warnings.warn('a warning on every call')\n" + MLP_FIRST_LINE)],
           expect_failed=ACCURACY),
    escape_attempt("hostile_forge_site_packages", FORGE, "writes a .pth file into the virtualenv's site-packages, "
                   "which trusted judge processes read at start-up"),
    escape_attempt("hostile_write_outside", WRITE_OUTSIDE, "overwrites files in the course package, the build "
                   "folder and a second checkout; writes its own working folder"),
    escape_attempt("hostile_read_second_copy", READ_SECOND_COPY, "reads a second copy of the hidden tests outside the "
                   "checkout and a file in build/"),
    escape_attempt("hostile_ctypes_escape", CTYPES_ESCAPE, "ctypes.pythonapi.system() and ctypes.pythonapi.fork(), "
                   "past the audit hook"),
    escape_attempt("hostile_print_500mb", PRINT_500MB, "prints 500 MB while its cells load, otherwise the reference "
                   "with trained weights: full marks", trained=True, expect_failed=UNTRAINED_HERE),
    Sample("hostile_hash_lookup", "weights that learned nothing (the reference's, scrambled), and a ViT.forward that "
           "looks each public FashionMNIST test image up in a table of hashes, undoing the canary's one-pixel roll: "
           "the threshold is judged from the weights in the course's implementation, so it scores chance",
           edits=[("vit", VIT_RETURN, hash_lookup)], scrambled=True, expect_failed=ACCURACY),
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

# Planted bugs of the notebook's public checks (tests/test_public_checks.py reads this list): (the check that must
# catch it, what the bug is, {answer cell: (solution text, buggy text)}).
PUBLIC_CHECK_BUGS = [
    ("patchify_check", "patches in column-major order",
     {"patchify": ("x.flatten(2).transpose(1, 2)", "x.transpose(2, 3).flatten(2).transpose(1, 2)")}),
    ("attention_check", "scores scaled by sqrt(D) instead of sqrt(head size)",
     {"attention": ("math.sqrt(self.head_size)", "math.sqrt(D)")}),
    ("attention_check", "softmax over the queries",
     {"attention": ("scores.softmax(dim=-1)", "scores.softmax(dim=-2)")}),
    ("attention_check", "heads merged without moving them back next to the head size",
     {"attention": ("(weights @ v).transpose(1, 2).reshape(B, T, D)", "(weights @ v).reshape(B, T, D)")}),
    ("block_check", "post-norm instead of pre-norm",
     {"block": ("x = x + self.attn(self.norm1(x))", "x = self.norm1(x + self.attn(x))")}),
    ("vit_check", "class token appended after the patches",
     {"vit": ("torch.cat([cls, x], dim=1)", "torch.cat([x, cls], dim=1)")}),
]
