"""The CIFAR-10 CNN assignment, declared for the grading pipeline (see autograder/spec.py)."""
from autograder.spec import AssignmentSpec, GpuCheck, ReadmeRow, Threshold

SPEC = AssignmentSpec(
    saved_files=("cnn_simple.safetensors", "cnn_simple.json", "cnn_better.safetensors", "cnn_better.json"),
    run_cells=("setup", "simple_config", "simple_cnn", "inception", "residual", "better_config", "better_cnn"),
    # The SimpleCNN's recipe trains in about a minute on a CPU; the BetterCNN's takes hours there.
    training_cells=("setup", "simple_config", "simple_cnn", "inception", "residual", "better_config",
                    "better_cnn", "cifar_data", "simple_hparams", "simple_train"),
    cuda_training_cells=("better_hparams", "better_train"),
    # Thresholds, with the seconds the reference needs for the test split on one CPU thread (a student's saved
    # model gets scoring.evaluation_limit of that).
    thresholds={
        # CPU survey, 10 000 CIFAR-10 images
        "simple_cnn": Threshold(0.5, test="TestAccuracy::test_simple_cnn_accuracy", reference_eval_s=1, course_model=True,
                                data=("cifar10:test",)),
        # CPU survey, 10 000 CIFAR-10 images
        # The design is the student's, so the canary applies: the reference BetterCNN is trained only where CUDA is, so
        # its drop on the canary is the SimpleCNN reference's, measured here (benchmarks/canary_drop.py: 1.9-2.2 points;
        # a network of the same kind, without BetterCNN's augmentation, so no less tolerant of shifts). Its training
        # split is read too: training images are scored beside the canary copies (scoring.TRAIN_GAP_MARGIN).
        "better_cnn": Threshold(0.7, test="TestAccuracy::test_better_cnn_accuracy", reference_eval_s=52,
                                canary_drop=0.02, data=("cifar10:test", "cifar10:train")),
    },
    # Prebuilt networks and blocks: torchvision.models is already imported in the worker, so the tripwires
    # guard the factories and classes themselves.
    forbidden=("torch.hub.load", "torch.hub.load_state_dict_from_url", "torchvision.models.resnet18",
               "torchvision.models.resnet34", "torchvision.models.resnet50", "torchvision.models.googlenet",
               "torchvision.models.inception_v3", "torchvision.models.vgg11", "torchvision.models.vgg16",
               "torchvision.models.alexnet", "torchvision.models.densenet121", "torchvision.models.mobilenet_v2",
               "torchvision.models.efficientnet_b0", "torchvision.models.resnet.ResNet",
               "torchvision.models.resnet.BasicBlock", "torchvision.models.resnet.Bottleneck",
               "torchvision.models.googlenet.GoogLeNet", "torchvision.models.googlenet.Inception",
               "torchvision.models.googlenet.BasicConv2d", "torchvision.models", "timm", "transformers",
               "torch.hub", "pretrainedmodels"),
    # Allowed: the student's own Inception module, and names too common to forbid bare (load); their torch APIs
    # are still caught spelled out.
    allowed_names=("load", "load_state_dict_from_url", "ResNet", "BasicBlock", "Bottleneck", "GoogLeNet",
                   "Inception", "BasicConv2d"),
    # Grading budget per submission: the reference's layer tests take about 12 s on a 2-thread CPU; the two
    # CIFAR-10 thresholds at most their evaluation limits (60 + 520 s), usually a few seconds each.
    # torchvision is imported in the worker before the tripwires are set: they replace the forbidden
    # torchvision.models wherever a loaded module holds them.
    preload_modules=("torchvision",),
    submission_timeout_s=720,
    # make demo: 2 of the SimpleCNN's 10 epochs
    demo_edits=(("simple_hparams", "TrainRecipe(epochs=10,", "TrainRecipe(epochs=2,"),),
    demo_note="SimpleCNN: 2 of the notebook's 10 epochs",
    # measured (one thread): 22 CPU s, and 12 s more to decode the CIFAR-10 copy on a fresh clone; 58 % on the JPEG
    # stand-in against the bar's 50 % (4 epochs: 62 %)
    demo_train_s=34,
    # Measured on an H200 (2026-12-04): 144 s of training (SimpleCNN 26 s, BetterCNN 113 s), 30 s of grading.
    gpu_checks=(GpuCheck("cifar10", ("simple_cnn", "better_cnn"), 240, ("cifar10",)),),
    # The README's rows of this assignment (autograder/deploy/readme_tables.py writes them there).
    readme=ReadmeRow(
        builds=('CIFAR-10 CNNs: the tutorial `SimpleCNN`, GoogLeNet `Inception` module, ResNet `ResidualBlock`, a '
                '`BetterCNN` built from them'),
        graded_on=('layer tests against references built from torch layers; CIFAR-10 SimpleCNN ≥ 50 %, BetterCNN ≥ 70 %'),
        data='`dlcourse/data.py`',
        course_code='`dlcourse/training.py`',
    ),
)
