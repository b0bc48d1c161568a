"""The grading pipeline: from a folder of submissions to a gradebook, in the order a batch runs
(ARCHITECTURE.md draws it).

    grade.py          survey, roster, unpack, isolation check, preflight, choosing what to grade, the batch (grade_folder)
    judge_server.py   a process that imports once and forks each judge into a session of its own
    judge.py          the judge: the pytest plugin that runs one submission's hidden tests
    results.py        what a judge writes (SubmissionResult, Status, Outcome)
    store.py          results kept durably as each judge ends (OUT/results/<id>.json)
    gradebook.py      the gradebook built from the store, and its outputs (CSV, JSON, feedback files)
    integrity.py      the TA's integrity report
    datasets.py       the datasets the thresholds read, checked before the first student
    csvfiles.py       CSVs from spreadsheets

It imports the declaration (autograder.spec, autograder.assignments, ...) and the hidden-test kit (autograder.kit),
never deployment (autograder.deploy).
"""
