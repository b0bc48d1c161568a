"""nbgrader settings for building student releases: `nbgrader generate_assignment <name>`.

source/<assignment>/*.ipynb (instructor notebooks, solutions inside) -> release/<assignment>/ (students).
nbgrader is used only to build releases and for its cell metadata (grade_id, locked, points); grading is
done by the project's own autograder (see autograder/), which runs student code in a sandbox.
"""
from pathlib import Path

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.root = str(Path(__file__).resolve().parent)
c.CourseDirectory.course_id = "dlcourse"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.db_url = f"sqlite:///{Path(__file__).resolve().parent / 'gradebook.db'}"

# What stays out of the release: the assignment's declaration and its sample submissions (which hold solution
# lines) live beside the notebook in source/<name>/ but are the grader's.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "spec.py", "samples.py"]

# What students see where a solution was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# What a TA sees but students do not: the rubric of a hand-graded cell (`metadata.dlcourse.rubric` in the source
# notebook, shown by the hand-grading page, autograder/deploy/hand_grading.py) is removed from the release.
from nbgrader.converters.generate_assignment import GenerateAssignment  # noqa: E402
from nbgrader.preprocessors import NbGraderPreprocessor  # noqa: E402  (enabled by default, unlike nbconvert's base)


class ClearRubrics(NbGraderPreprocessor):
    """Drops each cell's `dlcourse` metadata (the rubric) from the student's notebook."""

    def preprocess_cell(self, cell, resources, index):
        cell.metadata.pop("dlcourse", None)
        return cell, resources


c.GenerateAssignment.preprocessors = [*GenerateAssignment.class_traits()["preprocessors"].default(), ClearRubrics]
