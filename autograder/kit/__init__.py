"""The hidden-test kit: what autograder/hidden_tests/*.py import to test a submission.

    student.py              StudentCode: the hidden tests' handle on the student's code in the sandboxed worker
    requests.py             the request helpers (call/module/name/...), JSON + safetensors, never pickle
    families.py             test families shared across assignments, instantiated with each assignment's names
    reference.py            references built in the trusted process, compared with the student's outputs
    attention_reference.py  the reference attention the families and stand-ins share
    stand_ins/              the grader's reference layers put into the student's model (run in the judge)
    trusted.py              thresholds judged from the saved weights in the course's own implementation
    scoring.py              scoring saved models (graded_classifier, the canary)
    sequential.py           the sequential threshold rule
    translation_grading.py  decoding thresholds (greedy decoding, BLEU)
    imdb_grading.py         the IMDB thresholds

It imports the declaration and the sandbox, never the pipeline's orchestration (autograder.pipeline) nor deployment.
"""
