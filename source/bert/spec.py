"""The BERT fine-tuning on IMDB assignment, declared for the grading pipeline (see autograder/spec.py)."""
from autograder.spec import AssignmentSpec, GpuCheck, ReadmeRow, Threshold

SPEC = AssignmentSpec(
    saved_files=("bert_imdb.safetensors", "bert_imdb.json", "bert_imdb_tokenizer.json"),
    run_cells=("setup", "tokenize", "classifier", "freeze", "optimizer", "train_step"),
    training_cells=(),
    cuda_training_cells=("setup", "load_pretrained", "tokenize", "recipe", "imdb_data", "classifier", "freeze",
                         "optimizer", "train_step", "fine_tune", "evaluate", "train", "report", "save"),
    # Thresholds, with the seconds the reference needs for the test split on one CPU thread (a student's saved
    # model gets scoring.evaluation_limit of that).
    thresholds={
        # CPU survey, bert-base on 25 000 reviews of 256 tokens: the whole split is far past any CPU budget; the
        # sequential rule decides a clear case on a CPU from its first 1 000 reviews (+ 500 canary copies)
        # The head is the student's, so the canary applies. Its drop for the reference is not measured yet (no
        # fine-tuned checkpoint here): 0, so the margin alone (scoring.CANARY_MARGIN) separates it from a lookup.
        "imdb": Threshold(0.85, test="TestAccuracy::test_imdb_accuracy", reference_eval_s=16519, canary_drop=0.0,
                          data=("imdb:test",)),
    },
    # The head is the student's: a ready-made sequence-classification model is not allowed.
    forbidden=("transformers.AutoModelForSequenceClassification", "transformers.BertForSequenceClassification"),
    # Imported in the worker before its audit hook: transformers reads many files when it first loads a model class.
    preload_modules=("transformers", "transformers.models.bert.modeling_bert",
                     "transformers.models.bert.tokenization_bert", "transformers.models.auto.modeling_auto",
                     "transformers.optimization", "tokenizers", "dlcourse.bert"),
    # Grading budget per submission: the reference's other tests take about 6 s on a 2-thread CPU; the threshold
    # scores bert-base on IMDB within the threshold budget (GradeOptions.threshold_budget) and this one.
    submission_timeout_s=3600,
    large_model=True,  # its reference trains on every core (dlcourse.threads)
    gpu_checks=(GpuCheck("imdb", ("imdb",), 330, ("imdb", "datasets", "minilm"), grade_s=90),),
    # The README's rows of this assignment (autograder/deploy/readme_tables.py writes them there).
    readme=ReadmeRow(
        builds=('Fine-tuning a pretrained BERT (`bert-base-uncased` via `transformers`) on IMDB: `tokenize_batch`, '
                'their own classification head `SentimentClassifier`, `freeze_encoder`, AdamW with linear '
                'warm-up/decay, mixed precision on CUDA, a classification report'),
        graded_on=('tests on a tiny random `BertModel` and an in-memory tokenizer (truncation, padding, mask, '
                   'padding-invariant logits, gradients, freezing, the loss falls, the schedule); IMDB ≥ 85 % (on a CPU, '
                   'clear cases only: see below)'),
        data='`dlcourse/text_data.py` (`load_imdb`)',
        course_code='`dlcourse/bert.py`',
    ),
)
