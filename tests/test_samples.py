"""The sample submissions, graded through the real command line, score exactly as declared in
autograder/samples/<assignment>.py. This includes the real FashionMNIST threshold: the reference ViT,
trained on this machine by the reference notebook's own cells (with the demo's recipes, spec.demo_edits),
graded from its saved weights on the 10 000 official test images."""
import json
import subprocess
import sys

import pytest
import torch

from autograder.assignments import PROJECT_ROOT, list_assignments
from autograder.feedback import EXCERPT_CHARS
from autograder.samples import canaries, samples_for
from threshold_notes import assert_decided


@pytest.fixture(scope="session")
def planted_canaries():
    """The files hostile samples try to write or read (autograder/samples/canaries.py), planted before any grading."""
    canaries.plant()
    yield canaries.paths()
    canaries.remove()


@pytest.fixture(scope="session")
def graded(tmp_path_factory, local_datasets, planted_canaries):
    """graded(name) -> (gradebook, grades folder): the assignment's samples, built and graded once per session."""
    cache = {}

    def grade(name):
        if name not in cache:
            out = tmp_path_factory.mktemp(f"samples-{name}")
            # The references train with the demo's recipes (as make demo does, sharing its cache): the captioning
            # notebook's one saved setting of three, SimpleCNN's 2 of 10 epochs; the others' recipes as they are.
            # ViT's layer calls take milliseconds: a 4 s call timeout spares the hostile infinite loop three 20 s waits.
            timeout = ["--timeout", "4"] if name == "vit" else []
            for args in (["samples", name, "--out", str(out / "submissions"), "--demo-recipes"],
                         ["grade", str(out / "submissions"), "--assignment", name, "--out", str(out / "grades"),
                          "--workers", "2", "--no-preflight", *timeout]):  # the untouched release is a sample
                proc = subprocess.run([sys.executable, "-m", "autograder", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
                print(proc.stdout[-3000:])
                assert proc.returncode == 0, proc.stderr[-3000:]
            cache[name] = json.loads((out / "grades" / "gradebook.json").read_text()), out / "grades"
        return cache[name]
    return grade


def sample_params():
    return [pytest.param(name, sample, id=f"{name}-{sample.name}") for name in list_assignments() for sample in samples_for(name)]


@pytest.mark.parametrize("name", list_assignments())
def test_every_sample_has_a_row(graded, name):
    gradebook, _ = graded(name)
    assert sorted(r["student_id"] for r in gradebook["submissions"]) == sorted(s.name for s in samples_for(name))


@pytest.mark.parametrize("name,sample", sample_params())
def test_sample_fails_exactly_the_expected_tests(graded, name, sample):
    gradebook, _ = graded(name)
    row = next(r for r in gradebook["submissions"] if r["student_id"] == sample.name)
    if sample.needs_sandbox and row["isolation"].startswith("weak"):
        pytest.skip(f"graded with {row['isolation']} (no sandbox here), where this hostile sample can reach more")
    outcomes = {tid: t["outcome"] for tid, t in row["tests"].items()}
    skipped = {tid for tid, o in outcomes.items() if o == "skipped"}
    failed = {tid for tid, o in outcomes.items() if o in ("failed", "error")}
    assert skipped == set(), {t: row["tests"][t]["message"] for t in skipped}  # every threshold is judged on this grader
    assert failed == sample.expect_failed, {t: row["tests"][t]["message"] for t in failed ^ sample.expect_failed}
    assert row["status"] == sample.expect_status
    assert row["score"] == sum(t["earned"] for t in row["tests"].values())
    assert row["max_score"] == sum(t["points"] for tid, t in row["tests"].items() if tid not in skipped)


@pytest.mark.parametrize("name", list_assignments())
def test_grading_left_every_canary_untouched(graded, name):
    """No sample, the hostile ones included, changed a canary file outside its sandbox."""
    gradebook, _ = graded(name)
    assert canaries.damaged() == []
    judged = [row for row in gradebook["submissions"] if row["status"] not in ("bad-archive", "grader-error")]
    assert all(row["isolation"] and row["memory_cap"] for row in judged)  # each row records how it was confined
    # The hostile samples above ran in workers forked from the judge servers' worker templates where those run (under
    # bubblewrap on a CPU grader; tests/test_sandbox.py runs the sandbox's own tests both ways).
    if not torch.cuda.is_available():
        for row in judged:
            if row["isolation"].startswith("bubblewrap"):
                assert "forked from the worker template" in row["isolation"], (row["student_id"], row["isolation"])


@pytest.mark.parametrize("name", ["vit"])  # the parameter names the assignment whose grading it reads (conftest)
def test_reference_meets_the_fashion_mnist_threshold(graded, name):
    """The issue's CI threshold: ≥ 85 % on the real FashionMNIST test set, judged by the autograder."""
    gradebook, _ = graded(name)
    row = next(r for r in gradebook["submissions"] if r["student_id"] == "reference")
    test = row["tests"]["TestAccuracy::test_fashion_mnist_accuracy"]
    print("reference:", row["notes"].get("vit_fashionmnist"))
    assert test["outcome"] == "passed", test["message"]
    assert "FashionMNIST (official)" in row["notes"]["vit_fashionmnist"]
    assert_decided(row["notes"]["vit_fashionmnist"])
    untouched = next(r for r in gradebook["submissions"] if r["student_id"] == "untouched_release")
    assert untouched["tests"]["TestAccuracy::test_fashion_mnist_accuracy"]["outcome"] == "failed"


@pytest.mark.parametrize("name", ["vit"])  # the parameter names the assignment whose grading it reads (conftest)
def test_the_threshold_judges_the_weights_not_the_code(graded, name):
    """The FashionMNIST threshold runs the saved weights in the course's implementation: a forward that looks the public
    test images up, with weights that learned nothing, scores chance, and its feedback says the code disagrees; correct
    code written differently, and code that hangs, keep the threshold their trained weights earn."""
    gradebook, _ = graded(name)
    rows = {r["student_id"]: r for r in gradebook["submissions"]}
    test = "TestAccuracy::test_fashion_mnist_accuracy"
    lookup = rows["hostile_hash_lookup"]
    assert lookup["tests"][test]["outcome"] == "failed" and "below the required 85%" in lookup["tests"][test]["message"]
    assert "does not compute what the notebook's model computes" in lookup["notes"]["vit_fashionmnist check"]
    for fair in ("reference", "alternative_correct"):
        assert rows[fair]["tests"][test]["outcome"] == "passed" and "vit_fashionmnist check" not in rows[fair]["notes"]
    hung = rows["hostile_infinite_loop"]
    assert hung["tests"][test]["outcome"] == "passed"
    assert "could not be run on the saved weights" in hung["notes"]["vit_fashionmnist check"]


@pytest.mark.parametrize("name", ["cnn"])  # the parameter names the assignment whose grading it reads (conftest)
def test_reference_meets_the_simple_cnn_threshold(graded, name):
    """The SimpleCNN the reference notebook's recipe trains here, shortened to the demo's 2 of its 10 epochs (under a
    minute on a CPU thread), judged by the autograder on this grader against the course's bar (≥ 50 % on CIFAR-10):
    the notebook's full recipe only trains longer (make demo-all trains it)."""
    gradebook, _ = graded(name)
    row = next(r for r in gradebook["submissions"] if r["student_id"] == "reference")
    test = row["tests"]["TestAccuracy::test_simple_cnn_accuracy"]
    print("reference:", row["notes"].get("cnn_simple"))
    assert test["outcome"] == "passed", test["message"]
    assert_decided(row["notes"]["cnn_simple"])


@pytest.mark.parametrize("name", ["transformer"])  # the parameter names the assignment whose grading it reads (conftest)
def test_reference_meets_the_transformer_reversal_threshold(graded, name):
    """The reversal model the reference notebook's own cells train here (about 35 s on one core), judged by the hidden
    test: it draws held-out sequences from a secret seed (1 000, more where the sequential rule needs them), the
    course's Transformer and greedy_decode decode them from the saved weights, and at least 99 % must come out exactly
    right."""
    gradebook, _ = graded(name)
    row = next(r for r in gradebook["submissions"] if r["student_id"] == "reference")
    test = row["tests"]["TestAccuracy::test_reversal_accuracy"]
    print("reference:", row["notes"].get("transformer_reverse"))
    assert test["outcome"] == "passed", test["message"]
    assert "held-out reversal sequences" in row["notes"]["transformer_reverse"]


@pytest.mark.parametrize("name,saved", [("seq2seq", "seq2seq_reverse"), ("transformer", "transformer_reverse")])
def test_the_reversal_threshold_decodes_the_weights_with_the_course_code(graded, name, saved):
    """The reversal thresholds decode the saved weights with the course's own model and greedy decoder: a decoder that
    reverses the source itself, with weights that learned nothing, scores near zero and its feedback says its code
    disagrees; the reference and correct code written differently keep what their trained weights earn."""
    gradebook, _ = graded(name)
    rows = {r["student_id"]: r for r in gradebook["submissions"]}
    test = "TestAccuracy::test_reversal_accuracy"
    lookup = rows["hostile_reverse_lookup"]
    assert lookup["tests"][test]["outcome"] == "failed" and "below the required" in lookup["tests"][test]["message"]
    assert "does not decode what the notebook's model and decoding decode" in lookup["notes"][f"{saved} check"]
    for fair in ("reference", "alternative_correct"):
        assert rows[fair]["tests"][test]["outcome"] == "passed", rows[fair]["tests"][test]["message"]
    assert f"{saved} check" not in rows["reference"]["notes"]  # the course's own code, decoding alike


@pytest.mark.parametrize("name", list_assignments())
def test_the_integrity_report_flags_no_correct_code(graded, name):
    """Every batch writes integrity.md beside the gradebook; the reference and correct code written differently are
    never flagged, and the gradebook's integrity column counts each row's flags."""
    gradebook, grades = graded(name)
    report = (grades / "integrity.md").read_text()
    assert report.startswith(f"# {name}: integrity report") and "## Most similar pairs" in report
    rows = {r["student_id"]: r for r in gradebook["submissions"]}
    assert rows["reference"]["integrity"] == [] and rows.get("alternative_correct", {"integrity": []})["integrity"] == []
    if name == "rnn":  # getattr(nn, 'LS' + 'TM'): a forbidden layer reached through a name built at run time
        assert any("getattr() with a name built at run time" in f for f in rows["bug_torch_lstm_hidden"]["integrity"])
        assert "**bug_torch_lstm_hidden**" in report


@pytest.mark.parametrize("name", list_assignments())
def test_correct_code_gets_no_disagreement_note(graded, name):
    """Where a threshold runs the saved weights in the course's implementation, the student's own code also runs on a
    slice and a difference becomes a note: the reference and correct code written differently must never get one."""
    gradebook, _ = graded(name)
    for row in gradebook["submissions"]:
        if row["student_id"] in ("reference", "alternative_correct"):
            assert not [k for k in row["notes"] if k.endswith(" check")], (row["student_id"], row["notes"])


@pytest.mark.parametrize("name", list_assignments())
def test_feedback_reveals_no_hidden_test_code(graded, name):
    gradebook, grades = graded(name)
    hidden_markers = ["def test_", "fill_parameters_", "seeded_randn", "assert_close(", "FORBIDDEN_"]
    for row in gradebook["submissions"]:
        text = (grades / "feedback" / f"{row['student_id']}.md").read_text()
        assert not [m for m in hidden_markers if m in text], row["student_id"]
        assert "L" * (EXCERPT_CHARS + 1) not in text, row["student_id"]  # hostile_feedback_leak's 5,000 characters
        assert "worker" not in text.lower() or row["status"] == "crashed"


# The hostile ViT samples that the two backends confine differently. The others attack inside the student's own
# process or through what the grader does with the worker's replies, the same under either backend, and are graded
# under bubblewrap above: hostile_exit (os._exit), hostile_allclose (monkeypatches), hostile_stderr_noise (floods the
# pipes), hostile_wrapped_evasion (the tripwires), hostile_feedback_leak (the feedback sanitiser).
ATTACKS_ON_THE_CONFINEMENT = {"hostile_snooping", "hostile_infinite_loop", "hostile_forge_site_packages",
                              "hostile_write_outside", "hostile_read_second_copy", "hostile_ctypes_escape",
                              "hostile_print_500mb", "hostile_hash_lookup"}


@pytest.mark.parametrize("name", ["vit"])  # the parameter names the assignment whose grading it reads (conftest)
def test_hostile_samples_hold_under_the_uid_backend(name, tmp_path_factory, local_datasets, planted_canaries):
    """The ViT's hostile samples whose attack meets the confinement itself (files, network, processes, output size,
    killing a worker; see ATTACKS_ON_THE_CONFINEMENT) and the reference, graded with `grade --sandbox uid` on a host
    made container-like (tests/container_like.py: bubblewrap unrunnable, the dataset mirror private): each scores
    exactly as under bubblewrap, each row says the uid backend confined it, and no canary changed. The second copy of
    the course is kept private for this run (mode 700), as the README asks of any copy on a host graded with the uid
    backend."""
    import os
    import shutil

    from autograder.samples import build_samples
    from container_like import container_like
    from container_like import problem as wrapper_problem

    if os.geteuid() != 0:
        pytest.skip("the uid backend needs the grader to run as root")
    why = wrapper_problem()
    if why:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"cannot simulate a container here: {why}")
    chosen = [s for s in samples_for(name) if s.name in ATTACKS_ON_THE_CONFINEMENT or s.name == "reference"]
    assert {s.name for s in chosen} == ATTACKS_ON_THE_CONFINEMENT | {"reference"}
    out = tmp_path_factory.mktemp(f"uid-samples-{name}")
    build_samples(name, out / "submissions", only={s.name for s in chosen}, demo=True)
    second = planted_canaries["second_checkout"].parent
    second.chmod(0o700)
    (out / "stash").mkdir()
    try:
        command, env = container_like([sys.executable, "-m", "autograder", "grade", str(out / "submissions"),
                                       "--assignment", name, "--out", str(out / "grades"), "--workers", "2",
                                       "--no-preflight", "--timeout", "4", "--sandbox", "uid"], out / "stash")
        proc = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
    finally:
        second.chmod(0o755)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["student_id"]: r for r in json.loads((out / "grades" / "gradebook.json").read_text())["submissions"]}
    assert sorted(rows) == sorted(s.name for s in chosen)
    for sample in chosen:
        row = rows[sample.name]
        assert row["isolation"].startswith("uid backend (uid ") and "seccomp, no sockets" in row["isolation"], row
        failed = {tid for tid, t in row["tests"].items() if t["outcome"] in ("failed", "error")}
        assert failed == sample.expect_failed, (sample.name, {t: row["tests"][t]["message"] for t in failed})
        assert row["status"] == sample.expect_status, sample.name
    assert canaries.damaged() == []
    shutil.rmtree(out / "submissions")
