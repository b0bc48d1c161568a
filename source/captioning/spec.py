"""The image captioning assignment, declared for the grading pipeline (see autograder/spec.py)."""
from autograder.spec import AssignmentSpec, Threshold

SPEC = AssignmentSpec(
    saved_files=("captioning_overfit.safetensors", "captioning_overfit.json",
                 "captioning_standin.safetensors", "captioning_standin.json"),
    run_cells=("setup", "positional_encoding", "masks", "mha", "decoder_layer", "captioning_config", "captioning_model",
               "loss"),
    training_cells=("setup", "data", "positional_encoding", "masks", "mha", "decoder_layer", "captioning_config",
                    "captioning_model", "loss", "overfit_settings", "overfit_train", "standin_hparams", "standin_train"),
    # Thresholds, with the seconds the reference needs for the split on one CPU thread (a student's saved model gets
    # scoring.evaluation_limit of that). Both are judged on the course's stand-in data (dlcourse/captioning.py), not COCO.
    thresholds={
        # The hand-out's bar for 4 heads / 6 layers / lr 1e-3 after 100 epochs on 50 captions (per-caption loss).
        # MEASURED_OVERFIT
        "overfit_loss": Threshold(0.05, test="TestAccuracy::test_overfit_loss", reference_eval_s=1.0,
                                  ceiling=True),
        # MEASURED_BLEU
        "standin_bleu": Threshold(30.0, test="TestAccuracy::test_standin_bleu", reference_eval_s=2.0),
    },
    # Ready-made attention and transformer layers.
    forbidden=("torch.nn.functional.scaled_dot_product_attention",
               "torch.nn.functional.multi_head_attention_forward", "torch.nn.MultiheadAttention",
               "torch.nn.Transformer", "torch.nn.TransformerEncoder", "torch.nn.TransformerEncoderLayer",
               "torch.nn.TransformerDecoder", "torch.nn.TransformerDecoderLayer", "transformers", "torchtext"),
    # Grading budget per submission: MEASURED_BUDGET
    submission_timeout_s=300,
)
