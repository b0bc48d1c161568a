"""Check a finished assignment and pack it for upload: the one implementation of the checks.

    python collect.py check FOLDER SHOWN FILE...      (what CollectSubmission.sh runs)
    python collect.py manifest OUT STUDENT_ID ASSIGNMENT FILE...   (the archive's manifest.json, for the script)
    from dlcourse.collect import submit                (what the notebook's last cell runs, on Colab or Jupyter)

FOLDER holds the notebook (FILE[0]) and the files its training cells save (the rest); SHOWN is how the messages
name that folder (`release/vit`). `check` prints one problem per line, and warnings (packed anyway) prefixed with
WARNING_PREFIX; nothing when all is well.

Standard library only, and run as a plain script by CollectSubmission.sh (never `import dlcourse`, which imports
torch): it must work with any Python 3 a student has.
"""
import datetime
import io
import json
import os
import re
import sys
import tarfile
import tempfile

AGAIN = "re-run the notebook, save it, then check it again"
RESTORE = ("restore a good copy (Jupyter: File > Revert Notebook to Checkpoint; Colab: "
           "File > Revision history), re-run it, save it, then check it again")
# Only a live `raise`: a commented-out one is harmless.
STILL_RAISES = re.compile(r"^\s*raise NotImplementedError\(\)", re.M)
UNANSWERED = "YOUR ANSWER HERE"  # what nbgrader leaves in a written (hand-graded) answer cell
WARNING_PREFIX = "warning: "
STUDENT_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def _text(value):
    return "".join(value) if isinstance(value, list) else str(value or "")


def _describe(cell, number):
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    if grade_id:
        return "'%s'" % grade_id
    first = next((ln.strip() for ln in _text(cell.get("source")).splitlines() if ln.strip()), "")
    return "#%d (starting with %r)" % (number, first[:40])


def _load(path, name, problems):
    with io.open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        problems.append("%s is empty (0 bytes of notebook): %s" % (name, RESTORE))
        return None
    try:
        nb = json.loads(raw.decode("utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        problems.append("%s is not valid JSON (%s): the file is damaged; %s" % (name, e, RESTORE))
        return None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        problems.append("%s is valid JSON but not a Jupyter notebook (it has no list of cells): %s" % (name, RESTORE))
        return None
    return nb


def _check_cells(nb, name, problems, warnings):
    code = [(i, c) for i, c in enumerate(nb["cells"], 1) if isinstance(c, dict) and c.get("cell_type") == "code"]
    if not any(c.get("execution_count") is not None for _, c in code):
        problems.append("%s has not been run (no code cell was executed): run all cells (Jupyter: Kernel > "
                        "Restart & Run All; Colab: Runtime > Run all), save the notebook, then check it again" % name)
    for number, cell in code:
        label = _describe(cell, number)
        is_answer = cell.get("metadata", {}).get("nbgrader", {}).get("solution") is True
        if is_answer and STILL_RAISES.search(_text(cell.get("source"))):
            problems.append("%s still raises NotImplementedError in cell %s: finish that TODO (replace the "
                            "`raise NotImplementedError()` with your code), %s" % (name, label, AGAIN))
        elif any(isinstance(o, dict) and o.get("output_type") == "error"
                 and o.get("ename") == "NotImplementedError" for o in cell.get("outputs") or []):
            problems.append("%s still raises NotImplementedError in cell %s (see its saved output): finish the "
                            "TODO it runs into, %s" % (name, label, AGAIN))
    # Written answers are graded by hand, so an empty one is not an error here, but it scores nothing.
    unanswered = [_describe(c, number) for number, c in enumerate(nb["cells"], 1)
                  if isinstance(c, dict) and c.get("cell_type") == "markdown"
                  and c.get("metadata", {}).get("nbgrader", {}).get("solution") is True
                  and UNANSWERED in _text(c.get("source"))]
    if unanswered:
        warnings.append("%s: the written answer(s) %s still read %s; they are graded by hand and score nothing "
                        "as they are. Write them, save the notebook and check it again (packed anyway)"
                        % (name, ", ".join(unanswered), UNANSWERED))


def check(folder, shown, files):
    """(problems, warnings) of the submission in `folder`: files[0] is the notebook, the rest its saved files."""
    problems: list[str] = []
    warnings: list[str] = []
    name, path = files[0], os.path.join(folder, files[0])
    if not os.path.isfile(path):
        problems.append("%s/%s is missing: save your finished notebook there under that name (move it back if you "
                        "renamed or downloaded it elsewhere), then check it again" % (shown, name))
    else:
        try:
            nb = _load(path, name, problems)
            if nb is not None:
                _check_cells(nb, name, problems, warnings)
        except (OSError, IOError) as e:
            problems.append("%s cannot be read (%s): check that it is a readable file, then check it again" % (name, e))
        except Exception as e:  # a notebook shaped oddly enough to trip the checks: say so, never crash
            problems.append("%s could not be checked (%s: %s): open it in Jupyter or Colab, save it again, then "
                            "check it again" % (name, type(e).__name__, e))
    for saved in files[1:]:  # written by the notebook's training cells
        if not os.path.isfile(os.path.join(folder, saved)):
            problems.append("%s/%s is missing: run the training cells in %s, which save it next to the notebook, "
                            "then check it again" % (shown, saved, name))
    return problems, warnings


def manifest(student_id, assignment, files):
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"student_id": student_id, "assignment": assignment, "files": list(files),
                       "created": created}, indent=2) + "\n"


def pack(folder, student_id, assignment, files, out_dir):
    """Write <out_dir>/<student_id>.tar.gz holding <assignment>/<file> for each file and <assignment>/manifest.json,
    as CollectSubmission.sh does; a partial file is moved into place only once it reads back."""
    archive = os.path.join(out_dir, "%s.tar.gz" % student_id)
    data = manifest(student_id, assignment, files).encode("utf-8")
    fd, partial = tempfile.mkstemp(prefix=".%s.tar.gz.partial." % student_id, dir=out_dir)
    os.close(fd)
    try:
        with tarfile.open(partial, "w:gz") as tar:
            for f in files:
                tar.add(os.path.join(folder, f), arcname="%s/%s" % (assignment, f), recursive=False)
            info = tarfile.TarInfo("%s/manifest.json" % assignment)
            info.size, info.mtime = len(data), int(datetime.datetime.now().timestamp())
            tar.addfile(info, io.BytesIO(data))
        with tarfile.open(partial, "r:gz") as tar:
            tar.getnames()
        os.replace(partial, archive)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return archive


def submit(student_id, assignment, files, folder="."):
    """The notebook's submit cell: the checks, then <student_id>.tar.gz next to the notebook, and a download link.
    Returns the archive's path, or None when a check failed (every problem is printed)."""
    student_id = str(student_id).strip()
    if not STUDENT_ID.match(student_id):
        print("The student id %r is not allowed: set STUDENT_ID in the cell above to your id, with only letters, "
              "digits, '.', '_' and '-' (it becomes the archive's file name), then run this cell again." % student_id)
        return None
    folder = os.path.abspath(folder)
    print("Checking %s for student %s in %s ... (save the notebook first: File > Save)" % (assignment, student_id,
                                                                                         folder))
    problems, warnings = check(folder, folder, files)
    for w in warnings:
        print("Warning: " + w)
    if problems:
        print("Found %d problem(s); nothing was packed:" % len(problems))
        for p in problems:
            print("  - " + p)
        return None
    archive = pack(folder, student_id, assignment, files, folder)
    print("Packed %s for %s: %s (%.1f KB). Upload this file." % (assignment, student_id, archive,
                                                               os.path.getsize(archive) / 1024))
    _offer_download(archive)
    return archive


def _offer_download(archive):
    """A download link where the notebook runs in a browser: Colab's own download, else a relative link."""
    try:
        from google.colab import files as colab_files  # only on Colab
    except ImportError:
        colab_files = None
    if colab_files is not None:
        print("It is also in your Drive, next to the notebook. Downloading it now ...")
        colab_files.download(archive)
        return
    try:
        from IPython.display import FileLink, display
    except ImportError:
        return
    display(FileLink(os.path.relpath(archive)))


def main(argv):
    if len(argv) >= 4 and argv[0] == "check":
        problems, warnings = check(argv[1], argv[2], argv[3:])
        for line in problems + [WARNING_PREFIX + w for w in warnings]:
            print(line)
        return 0
    if len(argv) >= 5 and argv[0] == "manifest":
        with io.open(argv[1], "w", encoding="utf-8") as f:
            f.write(manifest(argv[2], argv[3], argv[4:]))
        return 0
    print("usage: python collect.py check FOLDER SHOWN NOTEBOOK [SAVED_FILE ...]\n"
          "       python collect.py manifest OUT STUDENT_ID ASSIGNMENT FILE ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
