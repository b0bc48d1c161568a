"""Command line of the autograder.

    python -m autograder release [ASSIGNMENT ...]        build release/<a>/ from source/<a>/ with nbgrader
    python -m autograder samples ASSIGNMENT [--out DIR]  write the sample submissions as archives
                               [--demo-recipes]   (references trained with make demo's shorter recipes)
    python -m autograder grade SUBMISSIONS --assignment A [--out DIR] [--workers N] [--hand-grades CSV]
                               [--force | --only ID ...]   again: grades only what is new or changed
                               [--roster CSV] [--duplicates error|latest] [--export canvas|csv [--export-file F] [--canvas-column C]]
                               [--slurm [--partition P] [--gpus-per-task N] [--array-parallelism N]
                                [--time-per-submission MIN] [--submissions-per-task K] [--cpus-per-task C] [--no-wait]]
                                                         one Slurm job array instead of local workers (autograder/deploy/slurm.py)
    python -m autograder hand-grade OUT [--port P] [--host H] [--hide-ids] [--export canvas|csv [--export-file F]
                               [--canvas-column C]]   the page where a TA grades the written answers of a graded
                                                         batch; each grade goes into OUT's gradebook (autograder/deploy/hand_grading.py)
    python -m autograder collect OUT [--job ID]          wait for a `grade --slurm --no-wait` (or for OUT/slurm/grade.sbatch
                                                         resubmitted by hand), then write its gradebook
    python -m autograder gradescope ASSIGNMENT --out autograder_A.zip [--hidden-until published|due_date]
                                                         the zip of a Gradescope autograder (autograder/deploy/gradescope.py)
    python -m autograder publish OUT [--url URL]         the student bundle: release notebooks, the course package
                                                         (wheel and source), CollectSubmission.sh, README (autograder/deploy/publish.py)
    python -m autograder demo [A ...] [--all-samples]    all of the above on a few bundled samples per assignment
                                                         (every sample with --all-samples), then the gradebooks
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.assignments import PROJECT_ROOT, list_assignments, load_assignment
from autograder.options import BatchOptions, GradeOptions

if TYPE_CHECKING:
    from autograder.pipeline.grade import Runner

DEFAULTS = GradeOptions()
SLURM_FLAGS = ("partition", "gpus_per_task", "array_parallelism", "time_per_submission", "no_wait")


# -- the command line: one parser per subcommand ----------------------------------------------------------------------
def add_release(sub) -> argparse.ArgumentParser:
    p_release = sub.add_parser("release", help="build student releases with nbgrader")
    p_release.add_argument("assignments", nargs="*")
    return p_release


def add_samples(sub) -> argparse.ArgumentParser:
    p_samples = sub.add_parser("samples", help="write an assignment's sample submissions")
    p_samples.add_argument("assignment")
    p_samples.add_argument("--out", type=Path)
    p_samples.add_argument("--demo-recipes", action="store_true",
                           help="train the reference weights with the spec's shorter demo recipes (demo_edits), as "
                                "make demo does")
    return p_samples


def add_grade(sub) -> argparse.ArgumentParser:
    p_grade = sub.add_parser("grade", help="grade a folder of submissions")
    p_grade.add_argument("submissions", type=Path)
    p_grade.add_argument("--assignment", required=True, choices=list_assignments())
    again = p_grade.add_mutually_exclusive_group()
    again.add_argument("--force", action="store_true",
                       help="regrade every submission (by default a rerun grades only what is new or changed)")
    again.add_argument("--only", nargs="+", metavar="ID",
                       help="regrade only these students and merge them into the existing gradebook")
    p_grade.add_argument("--roster", type=Path,
                         help="CSV with a student_id column: students without a submission get a no-submission row")
    p_grade.add_argument("--no-preflight", action="store_true",
                         help="do not read the thresholds' datasets nor grade the release notebook before the first "
                              "student (the checks that stop a batch whose grader is broken); for runs that check them "
                              "otherwise, as the project's tests do (their samples include the untouched release)")
    p_grade.add_argument("--duplicates", choices=("error", "latest"), default="error",
                         help="two submissions for one student id (alice.zip and alice.tar.gz): stop and list them "
                              "(error, the default) or grade the newest (latest)")
    add_slurm_options(p_grade)
    return p_grade


def add_slurm_options(p_grade: argparse.ArgumentParser) -> None:
    slurm = p_grade.add_argument_group("Slurm", "grade as one Slurm job array, one task per submission (or per "
                                       "--submissions-per-task), with the same judge and sandbox (autograder/deploy/slurm.py)")
    slurm.add_argument("--slurm", action="store_true", help="submit a job array with sbatch instead of grading here")
    slurm.add_argument("--partition", help="the Slurm partition (default: the cluster's default)")
    slurm.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per task: --gres=gpu:N (default 0)")
    slurm.add_argument("--array-parallelism", type=int, help="at most N tasks at once (--array=...%%N)")
    slurm.add_argument("--time-per-submission", type=int, metavar="MIN",
                       help="Slurm time limit per submission in minutes (default: the submission's budget plus the "
                            "judge's grace, rounded up)")
    slurm.add_argument("--submissions-per-task", type=int, default=1, metavar="K", help="submissions per array task")
    slurm.add_argument("--cpus-per-task", type=int, default=2, help="CPUs per task (default 2): the judge's torch threads")
    slurm.add_argument("--no-wait", action="store_true",
                       help="return once submitted; `python -m autograder collect OUT` waits and writes the gradebook")


def add_hand_grade(sub) -> argparse.ArgumentParser:
    p_hand = sub.add_parser("hand-grade", help="serve the page where a TA grades the written answers of a graded batch")
    p_hand.add_argument("out", type=Path, help="the output folder of a `grade` run (e.g. build/grades/vit)")
    p_hand.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine "
                                                            "only; the page also needs the token in the URL it prints)")
    p_hand.add_argument("--port", type=int, default=8765, help="the port (default 8765; 0: any free port)")
    p_hand.add_argument("--hide-ids", action="store_true", help="start with the student ids hidden (the page can "
                                                                "show them again)")
    return p_hand


def add_collect(sub) -> argparse.ArgumentParser:
    p_collect = sub.add_parser("collect", help="wait for a `grade --slurm --no-wait` and write its gradebook")
    p_collect.add_argument("out", type=Path)
    p_collect.add_argument("--job", help="the job id of OUT/slurm/grade.sbatch submitted again by hand (default: the "
                                         "job that `grade --slurm` submitted)")
    return p_collect


def add_slurm_task(sub) -> argparse.ArgumentParser:
    p_task = sub.add_parser("slurm-task", help="(run by the Slurm job scripts) grade one array task's submissions")
    p_task.add_argument("out", type=Path)
    which = p_task.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int)
    which.add_argument("--preflight", action="store_true")
    return p_task


def add_gradescope(sub) -> argparse.ArgumentParser:
    p_gradescope = sub.add_parser("gradescope", help="build an assignment's Gradescope autograder zip")
    p_gradescope.add_argument("assignment", choices=list_assignments())
    p_gradescope.add_argument("--out", type=Path, help="the zip to write (default autograder_<assignment>.zip)")
    p_gradescope.add_argument("--hidden-until", choices=("published", "due_date"),
                              help="students see the tests' results only once the grades are published, or after the "
                                   "due date (default: at once)")
    return p_gradescope


def add_publish(sub) -> argparse.ArgumentParser:
    p_publish = sub.add_parser("publish", help="write the student bundle (what students get, and nothing else)")
    p_publish.add_argument("out", type=Path)
    p_publish.add_argument("--url", help="where the bundle's dist/ folder will be served (default: bundle.cfg's url)")
    return p_publish


def add_demo(sub) -> argparse.ArgumentParser:
    p_demo = sub.add_parser("demo", help="release, sample submissions, grading, gradebook")
    p_demo.add_argument("assignments", nargs="*", metavar="ASSIGNMENT",
                        help="only these assignments (default: all)")
    p_demo.add_argument("--all-samples", action="store_true",
                        help="grade every sample submission (default: the reference, the untouched release, one "
                             "planted bug and one hostile sample per assignment)")
    p_demo.add_argument("--full-recipes", action="store_true",
                        help="train the references with the notebooks' own recipes (default: the specs' shorter "
                             "demo recipes, demo_edits, where a notebook's would not fit the demo's few minutes)")
    return p_demo


def add_train_reference(sub) -> argparse.ArgumentParser:
    p_train = sub.add_parser("train-reference", help="(run by the demo) train an assignment's reference weights into "
                                                     "build/cache/ with the notebook's own training cells")
    p_train.add_argument("assignment", choices=list_assignments())
    p_train.add_argument("--demo", action="store_true", help="with the spec's shorter demo recipes (demo_edits)")
    return p_train


def add_batch_options(*parsers: argparse.ArgumentParser) -> None:
    """Where a batch writes, how many workers, the hand grades (grade, demo)."""
    for p in parsers:
        p.add_argument("--out", type=Path, help="output folder (default build/grades/<assignment>)")
        p.add_argument("--workers", type=int, default=DEFAULTS.workers,
                       help=f"submissions graded in parallel (default {DEFAULTS.workers})")
        p.add_argument("--hand-grades", type=Path, help="CSV of hand-graded points: student_id,grade_id,points")


def add_judging_options(*parsers: argparse.ArgumentParser) -> None:
    """How each submission is judged (grade, demo, gradescope): the GradeOptions."""
    for p in parsers:
        p.add_argument("--memory-mb", type=int, default=DEFAULTS.memory_mb,
                       help=f"memory cap per student worker (default {DEFAULTS.memory_mb})")
        p.add_argument("--timeout", type=float, default=DEFAULTS.call_timeout,
                       help=f"seconds per layer-test call (default {DEFAULTS.call_timeout:g})")
        p.add_argument("--submission-timeout", type=float, default=None,
                       help="seconds for grading one whole submission (default: the assignment's submission_timeout_s in its spec.py, "
                            "a few times what grading the reference takes)")
        p.add_argument("--threshold-budget", type=float, default=DEFAULTS.threshold_budget,
                       help=f"seconds each accuracy/perplexity threshold may spend scoring a saved model (default "
                            f"{DEFAULTS.threshold_budget:g}): clear cases are decided from a secret sample whose first stage "
                            "is sized to fit it, borderline ones need more of the test split; one that does not fit is "
                            "reported as not judged; 0: no "
                            "threshold is judged (a quick check of the code's tests)")
        p.add_argument("--allow-weak-isolation", action="store_true",
                       help="where bubblewrap is unavailable (macOS, a locked-down container), grade with the Python "
                            "audit hook only; every gradebook row records the isolation used")
        p.add_argument("--sandbox", choices=("auto", "bubblewrap", "uid"), default=DEFAULTS.sandbox,
                       help="how the student's worker is confined: bubblewrap (an allow-list view, namespaces of its "
                            "own), uid (for containers without user namespaces: a uid of its own, the checkout's "
                            "secrets made private by file mode; the grader must be root), or auto (the default): "
                            "bubblewrap where it works, else uid. Every gradebook row records which")
        p.add_argument("--judge", choices=("server", "process"), default=DEFAULTS.judge,
                       help="server (the default): each judge is forked from a judge server per worker that has "
                            "imported torch and pytest once; process: a fresh interpreter per judge (seconds slower). "
                            "Student code runs in a new sandboxed worker per submission either way")
        p.add_argument("--no-worker-template", dest="worker_template", action="store_false",
                       help="start every sandboxed worker as a new interpreter (about 1.2 CPU s more per submission) "
                            "instead of forking it from the judge server's worker template (docs/instructors.md, "
                            "'How grading stays safe')")


def add_export_options(*parsers: argparse.ArgumentParser) -> None:
    """The course-file export (grade, hand-grade)."""
    for p in parsers:
        p.add_argument("--export", choices=("canvas", "csv"),
                       help="also merge the totals into a course CSV, one column per assignment keyed by student id "
                            "(canvas: the columns Canvas's gradebook import reads); hand-grade: after each grade saved")
        p.add_argument("--export-file", type=Path,
                       help="the course CSV for --export (default: <format>.csv beside the output folder); for "
                            "canvas, a gradebook exported from Canvas is filled in place")
        p.add_argument("--canvas-column",
                       help="with --export canvas: the Canvas column to fill, e.g. 'ViT (1202)' (default: the column "
                            "whose name before ' (id)' is the assignment's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_release(sub)
    add_samples(sub)
    p_grade = add_grade(sub)
    p_hand = add_hand_grade(sub)
    add_collect(sub)
    add_slurm_task(sub)
    p_gradescope = add_gradescope(sub)
    add_publish(sub)
    p_demo = add_demo(sub)
    add_train_reference(sub)
    add_batch_options(p_grade, p_demo)
    add_judging_options(p_grade, p_demo, p_gradescope)
    add_export_options(p_grade, p_hand)
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot say: combinations of options (parser.error exits)."""
    unknown = sorted(set(getattr(args, "assignments", None) or ()) - set(list_assignments()))
    if args.command in ("demo", "release") and unknown:
        parser.error(f"no assignment named {', '.join(unknown)} (source/ has {', '.join(list_assignments())})")
    if getattr(args, "export_file", None) and not args.export:
        parser.error("--export-file needs --export canvas|csv")
    if getattr(args, "canvas_column", None) and args.export != "canvas":
        parser.error("--canvas-column needs --export canvas")
    if args.command == "grade" and not args.slurm and any(getattr(args, f) for f in SLURM_FLAGS):
        parser.error("--partition, --gpus-per-task, --array-parallelism, --time-per-submission and --no-wait need --slurm")
    if args.command == "grade" and any(getattr(args, f) is not None and getattr(args, f) < 1 for f in (
            "array_parallelism", "time_per_submission", "submissions_per_task", "cpus_per_task")):
        parser.error("--array-parallelism, --time-per-submission, --submissions-per-task and --cpus-per-task take 1 or more")

# -- the subcommands: one function each, called with the parsed arguments; each returns the exit status -------------
def release(args: argparse.Namespace) -> int:
    from autograder.deploy.release import build_release

    build_release(args.assignments or list_assignments())
    return 0


def samples(args: argparse.Namespace) -> int:
    from autograder.samples import build_samples

    out = args.out or PROJECT_ROOT / "build" / "samples" / args.assignment
    for archive in build_samples(args.assignment, out, demo=args.demo_recipes):
        print(archive)
    return 0


def grade_options(args: argparse.Namespace) -> GradeOptions:
    """The GradeOptions of grade, demo and gradescope (add_judging_options)."""
    return GradeOptions(workers=getattr(args, "workers", 1), memory_mb=args.memory_mb, call_timeout=args.timeout,
                        submission_timeout=args.submission_timeout, threshold_budget=args.threshold_budget,
                        allow_weak_isolation=args.allow_weak_isolation, judge=args.judge, sandbox=args.sandbox,
                        worker_template=args.worker_template)


def slurm_runner(args: argparse.Namespace, out: Path) -> Runner | None:
    """grade_folder's runner: a Slurm job array with --slurm; otherwise None (local workers), once no Slurm job
    submitted into OUT still grades there (a second grader would judge the same students, and kill the tasks' judges
    as leftovers)."""
    from autograder.deploy.slurm import SlurmOptions, SlurmRunner, refuse_if_running

    if not args.slurm:
        refuse_if_running(out)
        return None
    return SlurmRunner(SlurmOptions(args.partition, args.gpus_per_task, args.array_parallelism,
                                    args.time_per_submission, args.submissions_per_task, args.cpus_per_task,
                                    not args.no_wait))


def export(args: argparse.Namespace, gradebook, out: Path) -> None:
    """--export: merge the totals into the course file."""
    from autograder.deploy.export import default_export_path, export_grades

    path, notes = export_grades(gradebook, args.export, args.export_file or default_export_path(out, args.export),
                                canvas_column=args.canvas_column)
    print(f"Merged the totals into {path} ({args.export} format)")
    for note in notes:
        print(f"  note: {note}")


def grade(args: argparse.Namespace) -> int:
    from autograder.pipeline.grade import grade_folder
    from autograder.pipeline.gradebook import format_summary, format_table

    out = args.out or PROJECT_ROOT / "build" / "grades" / args.assignment
    batch = BatchOptions(hand_grades=args.hand_grades, force=args.force,
                         only=tuple(args.only) if args.only is not None else None, roster=args.roster,
                         duplicates=args.duplicates, bar=True, check_release=not args.no_preflight)
    gradebook = grade_folder(args.submissions, args.assignment, out, grade_options(args), batch,
                             runner=slurm_runner(args, out))
    print(format_table(gradebook))
    print(f"\n{format_summary(gradebook)}")
    if args.export:
        export(args, gradebook, out)
    print(f"\nWrote {out}/gradebook.csv, gradebook.json, integrity.md and feedback/")
    return 0


def hand_grade(args: argparse.Namespace) -> int:
    from autograder.deploy.hand_grading import HandGrading, serve

    serve(HandGrading(args.out, args.export, args.export_file, args.canvas_column), args.host, args.port, args.hide_ids)
    return 0


def collect(args: argparse.Namespace) -> int:
    from autograder.deploy.slurm import collect as collect_job
    from autograder.pipeline.gradebook import format_summary, format_table

    gradebook = collect_job(args.out, array_job=args.job)
    print(format_table(gradebook))
    print(f"\n{format_summary(gradebook)}\n\nWrote {args.out}/gradebook.csv, gradebook.json, integrity.md and feedback/")
    return 0


def slurm_task(args: argparse.Namespace) -> int:
    from autograder.deploy.slurm import run_task

    return run_task(args.out.resolve(), None if args.preflight else args.index)


def gradescope(args: argparse.Namespace) -> int:
    """Gradescope grades one submission per container: one worker."""
    from autograder.deploy.gradescope import build_zip

    path = build_zip(args.assignment, args.out or Path(f"autograder_{args.assignment}.zip"), grade_options(args),
                     args.hidden_until)
    print(f"Wrote {path}: upload it as the autograder of '{args.assignment}' (docs/instructors.md, 'At scale')")
    return 0


def publish(args: argparse.Namespace) -> int:
    from autograder.deploy.publish import publish as write_bundle

    write_bundle(args.out, args.url)
    return 0


def demo(args: argparse.Namespace) -> int:
    from autograder.deploy.demo import run_demo

    return run_demo(grade_options(args), args.assignments, args.out, args.hand_grades, all_samples=args.all_samples,
                    full_recipes=args.full_recipes)


def train_reference(args: argparse.Namespace) -> int:
    from autograder.samples import recipe_edits, train_reference as train, training_cells

    assignment = load_assignment(args.assignment)
    print(train(assignment, training_cells(assignment), PROJECT_ROOT / "build" / "cache",
                recipe_edits(assignment, args.demo)))
    return 0


COMMANDS = {"release": release, "samples": samples, "grade": grade, "hand-grade": hand_grade, "collect": collect,
            "slurm-task": slurm_task, "gradescope": gradescope, "publish": publish, "demo": demo,
            "train-reference": train_reference}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
