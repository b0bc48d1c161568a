"""The Transformer from scratch assignment, declared for the grading pipeline (see autograder/spec.py)."""
from autograder.spec import AssignmentSpec, GpuCheck, ReadmeRow, Threshold

SPEC = AssignmentSpec(
    saved_files=("transformer_reverse.safetensors", "transformer_reverse.json",
                 "transformer_multi30k.safetensors", "transformer_multi30k.json",
                 "transformer_multi30k_tokenizer.json"),
    run_cells=("setup", "positional_encoding", "masks", "mha", "feedforward", "encoder_layer", "decoder_layer",
               "transformer_config", "transformer", "greedy"),
    training_cells=("setup", "positional_encoding", "masks", "mha", "feedforward", "encoder_layer",
                    "decoder_layer", "transformer_config", "transformer", "greedy", "reverse_data",
                    "reverse_hparams", "reverse_train"),
    cuda_training_cells=("multi30k_data", "multi30k_hparams", "multi30k_train"),
    # Thresholds, with the seconds the reference needs for the test split on one CPU thread (a student's saved
    # model gets scoring.evaluation_limit of that).
    thresholds={
        # measured here: greedy decoding of 1 000 sequences, 0.64 s; exact-sequence accuracy, the reference
        # reaches 100 %
        "reversal": Threshold(0.99, test="TestAccuracy::test_reversal_accuracy", reference_eval_s=0.7,
                              course_model=True),
        # CPU survey, 1 000 pairs; per-token perplexity ceiling, provisional: not yet verified on a GPU
        "multi30k_perplexity": Threshold(8.0, test="TestAccuracy::test_multi30k_perplexity", reference_eval_s=8,
                                         ceiling=True, course_model=True, data=("multi30k:train", "multi30k:test")),
    },
    # Ready-made attention and transformer layers.
    forbidden=("torch.nn.functional.scaled_dot_product_attention",
               "torch.nn.functional.multi_head_attention_forward", "torch.nn.MultiheadAttention",
               "torch.nn.Transformer", "torch.nn.TransformerEncoder", "torch.nn.TransformerEncoderLayer",
               "torch.nn.TransformerDecoder", "torch.nn.TransformerDecoderLayer", "transformers", "torchtext"),
    # Allowed: the student's own class is called Transformer (nn.Transformer is still caught spelled out).
    allowed_names=("Transformer",),
    # Grading budget per submission: the reference grades in about 6 s on a 2-thread CPU, reversal included
    # (limit 60 s); the Multi30k perplexity, all 1 000 test pairs, a few seconds more (limit 80 s).
    submission_timeout_s=300,
    demo_train_s=37,  # measured (one thread); make demo trains the notebook's recipe as it is
    # Measured on an H200 (2026-11-29): 124.6 s of training (reversal, then 20 Multi30k epochs), 26 s of grading.
    gpu_checks=(GpuCheck("text", ("reversal", "multi30k_perplexity"), 210, ("multi30k",)),),
    # The README's rows of this assignment (autograder/deploy/readme_tables.py writes them there).
    readme=ReadmeRow(
        builds=('Encoder–decoder Transformer from scratch: sinusoidal positional encoding, padding/causal masks, '
                '`MultiHeadAttention`, post-norm `EncoderLayer`/`DecoderLayer`, `Transformer`, `greedy_decode`; '
                'German→English on Multi30k'),
        graded_on=('layer tests against `nn.MultiheadAttention`, `F.scaled_dot_product_attention`, '
                   '`nn.TransformerEncoderLayer`/`DecoderLayer` with copied weights; sequence reversal ≥ 99 % '
                   'exact-sequence accuracy (every run, CPU); Multi30k test perplexity ≤ 8 (provisional)'),
        data='`dlcourse/text_data.py` (`load_multi30k`)',
        course_code=('`dlcourse/translation.py` (reversal task, Multi30k tokenizer, teacher forcing, perplexity, BLEU)'),
    ),
)
