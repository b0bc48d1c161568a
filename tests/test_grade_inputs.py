"""Tests for the first step of batch grading (autograder/pipeline/survey.py, autograder/pipeline/unpack.py): finding submissions and unpacking them.

Every submission here is made up in tmp_path; nothing is judged (no sandbox, no hidden tests).
"""
from __future__ import annotations

import gzip
import io
import os
import random
import tarfile
import zipfile
from pathlib import Path

import pytest

import autograder.pipeline.unpack as unpack_module
from autograder.assignments import PROJECT_ROOT, load_assignment
from autograder.pipeline.survey import Submission, discover, read_roster, survey
from autograder.pipeline.unpack import BadSubmission, unpack_submission

ASSIGNMENT = load_assignment("vit")
NOTEBOOK = ASSIGNMENT.notebook  # vit.ipynb
WEIGHTS = [f for f in ASSIGNMENT.files[1:] if f.endswith(".safetensors")]
CONFIGS = [f for f in ASSIGNMENT.files[1:] if f.endswith(".json")]


def content(name: str) -> bytes:
    return f"contents of {name}\n".encode()


def full_set() -> dict[str, bytes]:
    return {f"vit/{f}": content(f) for f in ASSIGNMENT.files}


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes, **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    archive.addfile(info, io.BytesIO(data))


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            add_bytes(archive, name, data)
    return path


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def unpack(path: Path, dest: Path) -> list[str]:
    subs = discover(path.parent)
    (sub,) = [s for s in subs if s.path == path]
    return unpack_submission(sub, ASSIGNMENT, dest)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def test_assignment_files():
    assert NOTEBOOK == "vit.ipynb" and WEIGHTS and CONFIGS


# -- discover ------------------------------------------------------------------------------------------------
def test_discover_finds_every_kind_and_ignores_the_rest(tmp_path):
    subs = tmp_path / "submissions"
    subs.mkdir()
    make_tar(subs / "alice.tar.gz", full_set())
    make_tar(subs / "bob.tgz", full_set())
    make_tar(subs / "carol.tar", full_set(), mode="w")
    make_zip(subs / "dave.zip", full_set())
    (subs / "erin.ipynb").write_bytes(content(NOTEBOOK))
    (subs / "frank" / "vit").mkdir(parents=True)
    (subs / ".DS_Store").write_bytes(b"x")
    (subs / ".hidden_dir").mkdir()
    (subs / "notes.txt").write_text("not a submission")
    (subs / "grades.csv").write_text("not a submission")
    found = {s.student_id: s.path.name for s in discover(subs)}
    assert found == {"alice": "alice.tar.gz", "bob": "bob.tgz", "carol": "carol.tar", "dave": "dave.zip",
                     "erin": "erin.ipynb", "frank": "frank"}


def test_every_entry_is_a_submission_or_a_listed_warning(tmp_path):
    subs = tmp_path / "submissions"
    subs.mkdir()
    make_tar(subs / "ALICE.TGZ", full_set())
    make_tar(subs / "bob.tar.xz", full_set(), mode="w:xz")
    make_tar(subs / "carol.Tar.Bz2", full_set(), mode="w:bz2")
    make_zip(subs / "dave.ZIP", full_set())
    (subs / "erin.IPYNB").write_bytes(content(NOTEBOOK))
    for name in ("essay.pdf", "frank.rar", ".DS_Store", "notes.txt"):
        (subs / name).write_bytes(b"x")
    (subs / "gina.ipynb").symlink_to(PROJECT_ROOT / "source" / "vit" / "vit.ipynb")
    (subs / "hank").symlink_to(tmp_path, target_is_directory=True)
    found = survey(subs)
    assert {s.student_id: s.path.name for s in found.submissions} == {
        "ALICE": "ALICE.TGZ", "bob": "bob.tar.xz", "carol": "carol.Tar.Bz2", "dave": "dave.ZIP", "erin": "erin.IPYNB"}
    warned = {w.split(":")[0]: w for w in found.warnings}
    assert set(warned) == {"essay.pdf", "frank.rar", ".DS_Store", "notes.txt", "gina.ipynb", "hank"}
    assert "symbolic link" in warned["gina.ipynb"] and "symbolic link" in warned["hank"]
    assert "CollectSubmission.sh" in warned["frank.rar"] and "hidden" in warned[".DS_Store"]
    for sub in found.submissions:  # every kind it finds, it can unpack
        assert unpack_submission(sub, ASSIGNMENT, tmp_path / "work" / sub.student_id)[0] == NOTEBOOK


def test_duplicate_student_ids_are_an_error_listing_the_files(tmp_path):
    make_tar(tmp_path / "alice.tar.gz", full_set())
    make_zip(tmp_path / "alice.zip", full_set())
    (tmp_path / "alice (1).ipynb").write_bytes(content(NOTEBOOK))
    (tmp_path / "bob.ipynb").write_bytes(content(NOTEBOOK))
    with pytest.raises(SystemExit) as info:
        survey(tmp_path)
    assert "alice: alice (1).ipynb, alice.tar.gz, alice.zip" in str(info.value)
    assert "--duplicates latest" in str(info.value)
    with pytest.raises(SystemExit):
        survey(tmp_path, duplicates="error")
    os.utime(tmp_path / "alice.zip", (2_000_000_000, 2_000_000_000))
    latest = survey(tmp_path, duplicates="latest")
    assert {s.student_id: s.path.name for s in latest.submissions} == {"alice": "alice.zip", "bob": "bob.ipynb"}
    assert sorted(w.split(":")[0] for w in latest.warnings) == ["alice (1).ipynb", "alice.tar.gz"]


def test_symlinked_loose_notebook_is_refused_by_unpack_too(tmp_path):
    (tmp_path / "erin.ipynb").symlink_to(PROJECT_ROOT / "source" / "vit" / "vit.ipynb")
    with pytest.raises(BadSubmission, match="symbolic link"):
        unpack_submission(Submission("erin", tmp_path / "erin.ipynb"), ASSIGNMENT, tmp_path / "work")


def test_symlinked_folder_inside_a_folder_submission_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / NOTEBOOK).write_bytes(content(NOTEBOOK))
    folder = tmp_path / "subs" / "frank"
    folder.mkdir(parents=True)
    (folder / "vit").symlink_to(outside, target_is_directory=True)
    assert unpack_submission(Submission("frank", folder), ASSIGNMENT, tmp_path / "work") == []


def test_roster(tmp_path):
    (tmp_path / "roster.csv").write_text("name,student_id\nAlice,alice\nBob,bob\nAlice again,alice\n")
    assert read_roster(tmp_path / "roster.csv") == ["alice", "bob"]
    (tmp_path / "bad.csv").write_text("id\nalice\n")
    with pytest.raises(SystemExit, match="student_id column"):
        read_roster(tmp_path / "bad.csv")
    (tmp_path / "blank.csv").write_text("student_id\nalice\n\n,x\n")
    with pytest.raises(SystemExit, match="line 4"):
        read_roster(tmp_path / "blank.csv")


def test_discover_keeps_dots_inside_student_ids(tmp_path):
    make_tar(tmp_path / "jane.doe.tar.gz", full_set())
    (tmp_path / "j.smith.ipynb").write_bytes(b"{}")
    assert sorted(s.student_id for s in discover(tmp_path)) == ["j.smith", "jane.doe"]


def test_discover_rejects_a_missing_folder(tmp_path):
    with pytest.raises(SystemExit):
        discover(tmp_path / "nope")


# -- unpack: the normal cases --------------------------------------------------------------------------------
def test_tar_gz_from_collect_submission(tmp_path):
    (tmp_path / "subs").mkdir()
    archive = make_tar(tmp_path / "subs" / "alice.tar.gz", full_set())
    dest = tmp_path / "work"
    written = unpack(archive, dest)
    assert sorted(written) == sorted(ASSIGNMENT.files)
    for f in ASSIGNMENT.files:
        assert (dest / f).read_bytes() == content(f)
    assert files_under(dest) == set(ASSIGNMENT.files)


def test_tar_gz_with_only_the_notebook(tmp_path):
    archive = make_tar(tmp_path / "alice.tar.gz", {f"vit/{NOTEBOOK}": content(NOTEBOOK)})
    assert unpack(archive, tmp_path / "work") == [NOTEBOOK]


def test_tar_without_folder_and_uncompressed(tmp_path):
    archive = make_tar(tmp_path / "alice.tar", {f: content(f) for f in ASSIGNMENT.files}, mode="w")
    assert sorted(unpack(archive, tmp_path / "work")) == sorted(ASSIGNMENT.files)


def test_zip(tmp_path):
    archive = make_zip(tmp_path / "dave.zip", {**full_set(), "vit/": b""})
    dest = tmp_path / "work"
    assert sorted(unpack(archive, dest)) == sorted(ASSIGNMENT.files)
    assert (dest / NOTEBOOK).read_bytes() == content(NOTEBOOK)


def test_loose_notebook(tmp_path):
    (tmp_path / "erin.ipynb").write_bytes(b'{"cells": []}')
    dest = tmp_path / "work"
    assert unpack(tmp_path / "erin.ipynb", dest) == [NOTEBOOK]  # saved under the assignment's notebook name
    assert (dest / NOTEBOOK).read_bytes() == b'{"cells": []}'


@pytest.mark.parametrize("layout", ["frank/vit/{f}", "frank/{f}"])
def test_folder(tmp_path, layout):
    subs = tmp_path / "subs"
    for f in ASSIGNMENT.files:
        target = subs / layout.format(f=f)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content(f))
    dest = tmp_path / "work"
    assert sorted(unpack(subs / "frank", dest)) == sorted(ASSIGNMENT.files)
    assert (dest / WEIGHTS[0]).read_bytes() == content(WEIGHTS[0])


def test_extra_files_are_ignored(tmp_path):
    members = {
        f"vit/{NOTEBOOK}": content(NOTEBOOK),
        "vit/helper.py": b"import os",
        "vit/data/fashion_mnist/train.bin": b"\0" * 100,
        f"vit/.ipynb_checkpoints/{NOTEBOOK}": b"old checkpoint",
        f"other/{NOTEBOOK}": b"wrong folder",
        f"vit/sub/{WEIGHTS[0]}": b"too deep",
        "README.md": b"hello",
        "setup.sh": b"rm -rf /",
    }
    dest = tmp_path / "work"
    assert unpack(make_tar(tmp_path / "alice.tar.gz", members), dest) == [NOTEBOOK]
    assert files_under(dest) == {NOTEBOOK}
    assert (dest / NOTEBOOK).read_bytes() == content(NOTEBOOK)


def test_first_copy_of_a_file_wins(tmp_path):
    members = {f"vit/{NOTEBOOK}": b"first", NOTEBOOK: b"second"}
    dest = tmp_path / "work"
    assert unpack(make_tar(tmp_path / "alice.tar.gz", members), dest) == [NOTEBOOK]
    assert (dest / NOTEBOOK).read_bytes() == b"first"


# -- unpack: hostile archives ----------------------------------------------------------------------------------
def test_tar_paths_never_escape_dest(tmp_path):
    root = tmp_path / "root"
    subs, dest = root / "a" / "subs", root / "a" / "work"
    subs.mkdir(parents=True)
    evil_abs = tmp_path / "abs_evil"
    members = {
        "../../evil": b"evil",
        f"../../{NOTEBOOK}": b"evil",
        f"../{NOTEBOOK}": b"evil",
        f"vit/../../{CONFIGS[0]}": b"evil",
        str(evil_abs): b"evil",
        f"/{NOTEBOOK}": b"evil",
        f"/vit/{WEIGHTS[0]}": b"evil",
        f"vit/{NOTEBOOK}": content(NOTEBOOK),
    }
    archive = make_tar(subs / "alice.tar.gz", members)
    with tarfile.open(archive) as check:  # the names really are stored as given
        assert str(evil_abs) in check.getnames() and "../../evil" in check.getnames()
    before = files_under(tmp_path)
    assert unpack(archive, dest) == [NOTEBOOK]
    assert files_under(dest) == {NOTEBOOK} and (dest / NOTEBOOK).read_bytes() == content(NOTEBOOK)
    assert files_under(tmp_path) - before == {str((dest / NOTEBOOK).relative_to(tmp_path))}
    assert not evil_abs.exists() and not Path(f"/{NOTEBOOK}").exists()


def test_zip_paths_never_escape_dest(tmp_path):
    dest = tmp_path / "a" / "work"
    members = {f"../../{NOTEBOOK}": b"evil", f"/{CONFIGS[0]}": b"evil", "../evil": b"evil",
               f"vit/{NOTEBOOK}": content(NOTEBOOK)}
    before = files_under(tmp_path)
    (tmp_path / "a").mkdir()
    archive = make_zip(tmp_path / "a" / "dave.zip", members)
    assert unpack(archive, dest) == [NOTEBOOK]
    assert files_under(tmp_path) - before == {"a/dave.zip", f"a/work/{NOTEBOOK}"}


def test_symlink_and_hardlink_members_are_ignored(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the instructor's solutions")
    archive = tmp_path / "subs" / "alice.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        add_bytes(tar, f"vit/{NOTEBOOK}", b"", type=tarfile.SYMTYPE, linkname=str(PROJECT_ROOT / "source/vit/vit.ipynb"))
        add_bytes(tar, f"vit/{CONFIGS[0]}", b"", type=tarfile.SYMTYPE, linkname=str(secret))
        add_bytes(tar, f"vit/{WEIGHTS[0]}", b"", type=tarfile.LNKTYPE, linkname=str(secret))
        add_bytes(tar, f"vit/{NOTEBOOK}", content(NOTEBOOK))  # a real notebook after the link
    dest = tmp_path / "work"
    assert unpack(archive, dest) == [NOTEBOOK]
    assert (dest / NOTEBOOK).read_bytes() == content(NOTEBOOK)
    assert not (dest / NOTEBOOK).is_symlink()
    assert files_under(dest) == {NOTEBOOK}


def test_device_and_fifo_members_are_ignored(tmp_path):
    archive = tmp_path / "alice.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_bytes(tar, f"vit/{NOTEBOOK}", b"", type=tarfile.FIFOTYPE)
        add_bytes(tar, f"vit/{CONFIGS[0]}", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add_bytes(tar, f"vit/{WEIGHTS[0]}", b"", type=tarfile.DIRTYPE)
    assert unpack(archive, tmp_path / "work") == []


def test_symlink_out_of_a_folder_submission_is_ignored(tmp_path):
    outside = tmp_path / "instructor" / "vit.ipynb"
    outside.parent.mkdir()
    outside.write_text("the instructor's solutions")
    folder = tmp_path / "subs" / "frank"
    (folder / "vit").mkdir(parents=True)
    (folder / "vit" / NOTEBOOK).symlink_to(outside)
    (folder / CONFIGS[0]).symlink_to(PROJECT_ROOT / "source" / "vit" / "vit.ipynb")
    (folder / "vit" / WEIGHTS[0]).write_bytes(content(WEIGHTS[0]))
    dest = tmp_path / "work"
    assert unpack(folder, dest) == [WEIGHTS[0]]
    assert files_under(dest) == {WEIGHTS[0]}


def test_oversized_member_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(unpack_module, "MAX_FILE_BYTES", 1000)
    archive = make_tar(tmp_path / "alice.tar.gz", {f"vit/{NOTEBOOK}": b"x" * 1001})
    dest = tmp_path / "work"
    with pytest.raises(BadSubmission, match="too large"):
        unpack(archive, dest)
    assert not (dest / NOTEBOOK).exists()


def test_total_size_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(unpack_module, "MAX_TOTAL_BYTES", 2500)
    archive = make_zip(tmp_path / "dave.zip", {f"vit/{f}": b"x" * 1000 for f in ASSIGNMENT.files})
    with pytest.raises(BadSubmission, match="too large"):
        unpack(archive, tmp_path / "work")


# -- unpack: broken archives ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alice.tar.gz", "alice.tgz", "alice.tar", "alice.zip"])
def test_garbage_archive_is_a_bad_submission_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not an archive at all\n" * 10)
    with pytest.raises(BadSubmission, match=name.replace(".", r"\.")) as info:
        unpack(path, tmp_path / "work")
    assert "CollectSubmission.sh" in str(info.value)


def test_empty_archive_file_is_a_bad_submission(tmp_path):
    (tmp_path / "alice.tar.gz").write_bytes(b"")
    with pytest.raises(BadSubmission, match="alice.tar.gz"):
        unpack(tmp_path / "alice.tar.gz", tmp_path / "work")


def test_truncated_tar_gz_is_a_bad_submission(tmp_path):
    good = make_tar(tmp_path / "good.tar.gz", {f"vit/{NOTEBOOK}": os.urandom(200_000)})
    raw = good.read_bytes()
    good.unlink()
    (tmp_path / "alice.tar.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BadSubmission, match="alice.tar.gz"):
        unpack(tmp_path / "alice.tar.gz", tmp_path / "work")


def _bad_deflate_block(gz_member: bytes) -> bytes:
    """The gzip member with its first deflate block header made invalid (BTYPE 11): zlib.error on reading."""
    return gz_member[:10] + b"\xff" + gz_member[11:]


def test_tar_gz_with_a_broken_deflate_stream_is_a_bad_submission(tmp_path):
    # Two concatenated gzip members (valid gzip): the first member's header reads fine, the rest raises zlib.error.
    buffer = io.BytesIO()
    tar = tarfile.open(fileobj=buffer, mode="w")
    for f in (NOTEBOOK, CONFIGS[0]):
        add_bytes(tar, f"vit/{f}", b"x" * 1000)
    tar.close()
    raw = buffer.getvalue()
    path = tmp_path / "alice.tar.gz"
    path.write_bytes(gzip.compress(raw[:512], mtime=0) + _bad_deflate_block(gzip.compress(raw[512:], mtime=0)))
    with pytest.raises(BadSubmission, match="alice.tar.gz"):
        unpack(path, tmp_path / "work")


def test_zip_with_a_broken_deflate_stream_is_a_bad_submission(tmp_path):
    path = make_zip(tmp_path / "dave.zip", {f"vit/{NOTEBOOK}": b"y" * 1000})
    raw = bytearray(path.read_bytes())
    raw[30 + len(f"vit/{NOTEBOOK}")] = 0xFF  # first byte of the deflate data, after the local file header
    path.write_bytes(bytes(raw))
    with pytest.raises(BadSubmission, match="dave.zip"):
        unpack(path, tmp_path / "work")


@pytest.mark.parametrize("suffix, mode", [(".tar.gz", "w:gz"), (".tar", "w:xz"), (".tar", "w:bz2"), (".zip", None)])
def test_corrupted_archives_never_raise_anything_but_bad_submission(tmp_path, suffix, mode):
    """Damaged bytes (truncation, flipped bits, overwritten blocks) give BadSubmission or a file, never a crash
    of the batch (zlib.error and LZMAError used to escape)."""
    data = random.Random(1).randbytes(30_000).hex().encode()  # compresses, but not to nothing
    members = {f"vit/{NOTEBOOK}": data, f"vit/{CONFIGS[0]}": data}
    good = tmp_path / f"good{suffix}"
    make_zip(good, members) if mode is None else make_tar(good, members, mode=mode)
    raw = good.read_bytes()
    good.unlink()
    rng = random.Random(0)
    for trial in range(30):
        damaged = bytearray(raw)
        if trial % 3 == 0:
            damaged = damaged[: rng.randrange(20, len(damaged))]
        elif trial % 3 == 1:
            for _ in range(5):
                damaged[rng.randrange(20, len(damaged))] ^= 0xFF
        else:
            at = rng.randrange(20, len(damaged) - 600)
            damaged[at:at + 500] = rng.randbytes(500)
        path = tmp_path / f"s{trial}{suffix}"
        path.write_bytes(bytes(damaged))
        try:
            unpack_submission(Submission(f"s{trial}", path), ASSIGNMENT, tmp_path / f"work{trial}")
        except BadSubmission as exc:
            assert path.name in str(exc)


# -- notebooks are data: whatever a student's notebook holds, a readable reason, never an exception --------------
def release_notebook() -> dict:
    from autograder.notebook import read_notebook
    return read_notebook(ASSIGNMENT.release_dir / NOTEBOOK)


def student_code(tmp_path: Path, notebook: bytes):
    """The judge's view of a submission holding only `notebook` (no worker is started)."""
    from autograder.options import GradeOptions
    from autograder.kit.student import StudentCode

    (tmp_path / NOTEBOOK).write_bytes(notebook)
    return StudentCode.for_assignment(ASSIGNMENT, tmp_path, tmp_path / "worker.log", GradeOptions(allow_weak_isolation=True))


def with_grade_id(nb: dict, old: str, new) -> dict:
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == old:
            cell["metadata"]["nbgrader"]["grade_id"] = new
    return nb


def test_deeply_nested_json_is_a_bad_notebook(tmp_path):
    code = student_code(tmp_path, b'{"cells": [], "metadata": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
    assert code.fatal and "nested too deeply" in code.fatal and code.problems == []


def test_a_cell_source_that_is_not_text_is_a_bad_notebook(tmp_path):
    import json

    nb = release_notebook()
    next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "mlp")["source"] = [1, {"x": 2}]
    code = student_code(tmp_path, json.dumps(nb).encode())
    assert "'mlp' has a source that is not text" in code.fatal


def test_a_grade_id_that_is_a_list_is_a_reported_problem(tmp_path):
    import json

    code = student_code(tmp_path, json.dumps(with_grade_id(release_notebook(), "mlp", ["mlp"])).encode())
    assert code.fatal is None
    assert any("grade_id that is not a string (list)" in p for p in code.problems), code.problems
    assert any("answer cell 'mlp' is missing" in p for p in code.problems)  # it ran the template instead


def test_a_duplicated_grade_id_is_a_reported_problem(tmp_path):
    import copy
    import json

    nb = release_notebook()
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "attention")
    twin = copy.deepcopy(cell)
    twin["source"] = "print('the second copy')\n"
    nb["cells"].append(twin)
    code = student_code(tmp_path, json.dumps(nb).encode())
    assert code.fatal is None
    assert [p for p in code.problems if "'attention' is used by 2 code cells" in p]
    assert "second copy" not in code.cell_source("attention")


def test_code_nested_too_deeply_to_read_is_reported_not_raised():
    from autograder.notebook import find_forbidden

    for source in ["x = " + " + ".join(["'a'"] * 20_000), "x = " + "(" * 5000 + "1" + ")" * 5000, "x = 1\0"]:
        found = find_forbidden(source, ["MultiheadAttention"], ["timm"])
        assert len(found) == 1 and "could not be checked" in found[0], (source[:20], found)


def test_randomly_damaged_notebooks_never_raise_in_the_judge(tmp_path):
    """Any value anywhere in a notebook's cells (a list for a grade_id, a number for a source, None for metadata):
    the judge's view is built, and each cell is readable or a Feedback naming the notebook, never another error."""
    import json

    from autograder.feedback import Feedback

    weird = [None, 7, 1.5, True, "x", [], ["a", 1], {}, {"grade_id": ["mlp"]}, [[[]]], {"nbgrader": []}]
    rng = random.Random(7)
    base = release_notebook()
    for trial in range(60):
        nb = json.loads(json.dumps(base))
        for _ in range(rng.randint(1, 4)):
            cell = rng.choice(nb["cells"])
            metadata = cell.setdefault("metadata", {})  # an earlier damage may have made it anything
            nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
            where = rng.choice([cell, metadata, nbgrader or cell])
            if isinstance(where, dict):
                where[rng.choice(["source", "metadata", "nbgrader", "grade_id", "cell_type", "solution"])] = rng.choice(weird)
        if rng.random() < 0.2:
            nb["cells"].append(rng.choice(weird))
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        code = student_code(folder, json.dumps(nb).encode())
        for gid in ASSIGNMENT.spec.run_cells:
            try:
                assert isinstance(code.cell_source(gid), str)
            except Feedback as exc:
                assert NOTEBOOK in str(exc) or "notebook" in str(exc), str(exc)
