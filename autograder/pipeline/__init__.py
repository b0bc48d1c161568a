"""The grading pipeline: from a folder of submissions to a gradebook, one step per module, in the order a batch runs
them (grade.py: grade_folder; ARCHITECTURE.md draws it):

    survey.py         which folder entries are submissions (one per student id), the warnings, the roster
    preflight.py      before the first student: the isolation check, the thresholds' datasets, the release graded
    unpack.py         only the files the assignment's submission.txt names, size-capped
    judges.py         one judge process per submission (run, timed out, stopped with what it started); leftovers
    judge_server.py   a process that imports once and forks each judge into a session of its own
    judge.py          the judge: the pytest plugin that runs one submission's hidden tests
    results.py        what a judge writes (SubmissionResult, Status, Outcome)
    store.py          results kept durably as each judge ends (OUT/results/<id>.json)
    gradebook.py      the gradebook built from the store, and its outputs (CSV, JSON, feedback files)
    integrity.py      the TA's integrity report
    grade.py          the batch: choosing what to grade, grading each, writing the gradebook (grade_folder)
    datasets.py       the datasets the thresholds read (preflight)
    csvfiles.py       CSVs from spreadsheets (roster, hand grades)

It imports the declaration (autograder.spec, autograder.assignments, ...), the sandbox and the hidden-test kit
(autograder.kit), never deployment (autograder.deploy).
"""
