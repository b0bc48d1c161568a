"""Hand grading in the browser: `python -m autograder hand-grade OUT` serves a page on a loopback port where a TA grades
the written answers of a graded batch, one answer at a time.

For each hand-graded cell (nbgrader `grade: true` answer cells of the release) the page shows the question (the
release's text before the cell, and the cell's own text where the release gives one), the student's answer as
Markdown with math, the points available, the rubric (`metadata.dlcourse.rubric` of the cell in the source
notebook), a comment box, next/previous with the keyboard, the progress, and an option to hide student ids. Each
grade given is kept in OUT/hand_grades.json (autograder/pipeline/gradebook.py: `give_hand_grade`, the same file `--hand-grades`
writes) and the gradebook (gradebook.csv/.json, feedback/) is written again at once (autograder/pipeline/grade.py:
`rebuild_gradebook`), as is the course export (`--export`), so points and comments reach every output without a
regrade.

Student answers are hostile: they are rendered with raw HTML off (markdown-it-py), their math turned into MathML on
the server (latex2mathml), and the result cleaned by an allow-list sanitiser (nh3, the Ammonia bindings); the page
also sends a Content-Security-Policy that runs only its own script file. Why not nbgrader's formgrader: README,
"Hand grading in the browser".
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

import latex2mathml.converter
import nh3
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

from autograder.assignments import Assignment, load_assignment
from autograder.pipeline.gradebook import give_hand_grade, hand_graded_cells, load_hand_grades, needs_recheck
from autograder.notebook import cell_source, grade_id, read_notebook
from autograder.pipeline.store import ResultStore

HERE = Path(__file__).resolve().parent
NO_ANSWER = "*(no answer: the submission has no cell with this grade_id)*"
MATHML_TAGS = {"math", "mrow", "mi", "mo", "mn", "ms", "msup", "msub", "msubsup", "mfrac", "msqrt", "mroot", "mtext",
               "mspace", "mtable", "mtr", "mtd", "munder", "mover", "munderover", "mstyle", "mpadded", "mphantom",
               "menclose", "semantics", "annotation"}
MATHML_ATTRIBUTES = {"math": {"display"}, "mo": {"stretchy", "fence", "separator", "lspace", "rspace", "form"},
                     "mstyle": {"displaystyle", "scriptlevel"}, "mtd": {"columnalign"}, "mspace": {"width"},
                     "mi": {"mathvariant"}, "menclose": {"notation"}}
# Only the page's own script and style file run; nothing is fetched from elsewhere (a student's image URL included).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")


def _math(latex: str, options: dict) -> str:
    """A `$...$` or `$$...$$` span as MathML (sanitised with the rest of the page); LaTeX it cannot read stays as text."""
    try:
        return latex2mathml.converter.convert(latex, display="block" if options.get("display_mode") else "inline")
    except Exception:  # latex2mathml raises many kinds on malformed LaTeX: show the student's text instead
        return f"<code>{nh3.clean_text(latex)}</code>"


MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table").use(dollarmath_plugin, renderer=_math)


def render_markdown(text: str) -> str:
    """Untrusted Markdown (a student's answer, or the course's question) as safe HTML: raw HTML is shown as text,
    math as MathML, and only an allow-list of tags, attributes and URL schemes survives (nh3)."""
    return nh3.clean(MARKDOWN.render(text), tags=nh3.ALLOWED_TAGS | MATHML_TAGS,
                     attributes={**nh3.ALLOWED_ATTRIBUTES, **MATHML_ATTRIBUTES},
                     url_schemes={"http", "https", "mailto"})


@dataclass
class Question:
    """A hand-graded cell as the TA sees it."""
    grade_id: str
    points: float
    prompt: str  # Markdown: the release's text before the cell (and the cell's own, where it asks the question)
    rubric: str  # Markdown: the source notebook's `metadata.dlcourse.rubric`, "" when it has none


def questions(assignment: Assignment) -> list[Question]:
    """The hand-graded cells of `assignment`, in notebook order, with their prompts and rubrics."""
    release = read_notebook(assignment.release_dir / assignment.notebook)
    source = {grade_id(c): c for c in read_notebook(assignment.source_dir / assignment.notebook)["cells"]}
    found = []
    for cell in hand_graded_cells(assignment):
        gid = cell["grade_id"]
        index = next(i for i, c in enumerate(release["cells"]) if grade_id(c) == gid)
        before = next((cell_source(c) for c in reversed(release["cells"][:index]) if c["cell_type"] == "markdown"), "")
        own = cell_source(release["cells"][index]).replace("YOUR ANSWER HERE", "").strip()
        rubric = source.get(gid, {}).get("metadata", {}).get("dlcourse", {}).get("rubric", "")
        found.append(Question(gid, float(cell["points"]), "\n\n".join(p for p in (before, own) if p),
                              "\n".join(rubric) if isinstance(rubric, list) else str(rubric)))
    return found


@dataclass
class Item:
    """One answer to grade: a question and a student."""
    question: Question
    student_id: str
    answer: str | None  # None: the submission has no such cell (or was graded before answers were kept)


class HandGrading:
    """The answers of a graded output folder, question by question, and what saving a grade does."""

    def __init__(self, out: Path, export: str | None = None, export_file: Path | None = None,
                 canvas_column: str | None = None):
        from autograder.pipeline.grade import rebuild_gradebook

        self.out = out.resolve()
        gradebook = rebuild_gradebook(self.out)  # checks OUT is a graded folder, and brings its outputs up to date
        self.assignment = load_assignment(gradebook.assignment)
        self.export, self.export_file, self.canvas_column = export, export_file, canvas_column
        stored = ResultStore(self.out, self.assignment.name).all()
        self.items = [Item(q, sid, stored[sid].result.written.get(q.grade_id))
                      for q in questions(self.assignment) for sid in sorted(stored)]
        if not self.items:
            raise SystemExit(f"{self.out}: nothing to grade by hand ('{self.assignment.name}' has "
                             f"{len(questions(self.assignment))} hand-graded cell(s), the folder {len(stored)} result(s))")

    def grades(self) -> dict[tuple[str, str], dict]:
        """The hand grades kept in OUT, with whether each one's answer changed since (`recheck`)."""
        kept = load_hand_grades(self.out)
        for item in self.items:
            record = kept.get((item.student_id, item.question.grade_id))
            if record is not None:
                record["recheck"] = needs_recheck(record["answer_sha256"], item.answer)
        return kept

    def left(self) -> int:
        """Answers without a grade, or whose grade needs a re-check."""
        kept = self.grades()
        return sum(1 for i in self.items if (r := kept.get((i.student_id, i.question.grade_id))) is None or r["recheck"])

    def save(self, index: int, points: float, comment: str) -> None:
        """Keep the grade of item `index` (ValueError for points out of range), then write the gradebook and the
        export again."""
        from autograder.pipeline.grade import rebuild_gradebook

        item = self.items[index]
        give_hand_grade(self.out, item.student_id, {"grade_id": item.question.grade_id, "points": item.question.points},
                        points, comment, item.answer)
        gradebook = rebuild_gradebook(self.out)
        if self.export:
            from autograder.deploy.export import default_export_path, export_grades

            export_grades(gradebook, self.export, self.export_file or default_export_path(self.out, self.export),
                          canvas_column=self.canvas_column)


class Handler(tornado.web.RequestHandler):
    """Every page: the token (from the URL the command printed) or the cookie it set, and the security headers."""

    @property
    def grading(self) -> HandGrading:
        return self.settings["grading"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        token = self.get_query_argument("token", "")
        if token and hmac.compare_digest(token, self.settings["token"]):
            self.set_signed_cookie("hand_grading", "1", httponly=True, samesite="Strict")
            self.redirect(self.request.path)
            return
        if self.get_signed_cookie("hand_grading") != b"1":
            raise tornado.web.HTTPError(403, "open the URL that `python -m autograder hand-grade` printed (with its token)")

    def hide_ids(self) -> bool:
        return self.get_cookie("hide_ids", "1" if self.settings["hide_ids"] else "0") == "1"


class IndexHandler(Handler):
    def get(self) -> None:
        """The first answer left to grade (or the first answer when all are graded)."""
        kept = self.grading.grades()
        first = next((n for n, i in enumerate(self.grading.items)
                      if (r := kept.get((i.student_id, i.question.grade_id))) is None or r["recheck"]), 0)
        self.redirect(f"/item/{first}")


class ItemHandler(Handler):
    def item(self, number: str) -> int:
        index = int(number)
        if not 0 <= index < len(self.grading.items):
            raise tornado.web.HTTPError(404, f"no answer number {index}")
        return index

    def get(self, number: str) -> None:
        ids = self.get_query_argument("ids", "")
        if ids in ("hidden", "shown"):
            self.set_cookie("hide_ids", "1" if ids == "hidden" else "0", samesite="Strict")
            self.redirect(self.request.path)
            return
        self.show(self.item(number), error="")

    def post(self, number: str) -> None:
        index = self.item(number)
        text = self.get_body_argument("points", "").strip()
        try:
            points = float(text)
        except ValueError:
            points, error = None, f"points {text!r} are not a number"
        try:
            if points is not None:
                self.grading.save(index, points, self.get_body_argument("comment", ""))
                error = ""
        except ValueError as exc:
            error = str(exc)
        if error:
            self.set_status(400)
            self.show(index, error=error)
            return
        self.redirect(f"/item/{min(index + 1, len(self.grading.items) - 1)}?saved={index}")

    def show(self, index: int, error: str) -> None:
        grading = self.grading
        item = grading.items[index]
        questions_ = list(dict.fromkeys(i.question.grade_id for i in grading.items))
        students = sorted({i.student_id for i in grading.items})
        record = grading.grades().get((item.student_id, item.question.grade_id))
        saved = self.get_query_argument("saved", "")
        self.render("hand_grading.html", assignment=grading.assignment.name, item=item, index=index,
                    total=len(grading.items), left=grading.left(), record=record, error=error,
                    question_number=questions_.index(item.question.grade_id) + 1, questions=len(questions_),
                    student_label=(f"submission {students.index(item.student_id) + 1}" if self.hide_ids()
                                   else item.student_id),
                    hide_ids=self.hide_ids(), saved=saved.isdigit() and int(saved) < len(grading.items),
                    prompt_html=render_markdown(item.question.prompt),
                    rubric_html=render_markdown(item.question.rubric) if item.question.rubric else "",
                    answer_html=render_markdown(item.answer if item.answer is not None else NO_ANSWER))


def make_app(grading: HandGrading, token: str, hide_ids: bool = False) -> tornado.web.Application:
    """The page's tornado application (XSRF-checked forms, signed cookies, templates that escape by default)."""
    return tornado.web.Application(
        [(r"/", IndexHandler), (r"/item/(\d+)", ItemHandler)],
        template_path=str(HERE / "templates"), static_path=str(HERE / "static"), xsrf_cookies=True,
        cookie_secret=secrets.token_hex(32), grading=grading, token=token, hide_ids=hide_ids)


def serve(grading: HandGrading, host: str = "127.0.0.1", port: int = 8765, hide_ids: bool = False) -> None:
    """Serve the page until ^C, printing its URL (with the token that opens it) once it listens."""
    token = secrets.token_urlsafe(24)
    server = tornado.httpserver.HTTPServer(make_app(grading, token, hide_ids))
    try:
        sockets = tornado.netutil.bind_sockets(port, host)
    except OSError as exc:
        raise SystemExit(f"hand-grade: cannot listen on {host}:{port} ({exc.strerror}); pass another --port "
                         "(0: any free one)") from None
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    print(f"Hand grading '{grading.assignment.name}' ({len(grading.items)} answers, {grading.left()} left) from "
          f"{grading.out}: open\n  http://{host}:{bound}/?token={token}\n(^C stops; every grade is kept in "
          f"{grading.out / 'hand_grades.json'} and the gradebook rewritten as it is saved)", flush=True)
    try:
        tornado.ioloop.IOLoop.current().start()
    except KeyboardInterrupt:
        print("Stopped; the grades given are kept.")
