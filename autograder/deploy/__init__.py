"""Deployment: releasing the course and running the pipeline where the course runs.

    colab.py          the notebooks' generated Colab setup and submit cells
    points.py         the release intro's points table, from the hidden tests' markers
    publish.py        the student bundle
    readme_tables.py  the README's per-assignment rows
    gradescope.py     the Gradescope zip and its run step
    slurm.py          grading as a Slurm job array
    hand_grading.py   the hand-grading page (templates/, static/)
    export.py         the course file / Canvas gradebook export
    demo.py           make demo

It imports the pipeline (autograder.pipeline); nothing in the pipeline or the kit imports it.
"""
