"""Image captioning data and training plumbing (the captioning assignment).

Two sources, one layout (`CaptioningData`: captions as word ids with `<NULL> <START> <END> <UNK>` = 0, 1, 2, 3,
image features, images or URLs for display):

- **The stand-in** (tests, CI, offline classrooms): `make_standin()` renders, from a seed and in a second or two,
  32x32 images with one to three coloured shapes and captions from a small grammar that needs the image to be right
  ("a large red circle left of a small blue square"). The features are a FIXED patch embedding: each 8x8 patch's
  pixels (in [0, 1], so the black background codes to 0) times a seeded random matrix, plus a sinusoidal code of the patch's position, so (N, 16, 64) per split.
  Every number printed on it says "stand-in"; it is not COCO.
- **COCO** (the real assignment): `load_coco(folder)` reads the usual captioning subset of COCO 2014 in the CS231n
  layout (`coco2014_captions.h5`, `coco2014_vocab.json`, `{train,val}2014_vgg16_fc7[_pca].h5`,
  `{train,val}2014_urls.txt`) from a folder the instructor provides (`DLCOURSE_COCO`, or `<DLCOURSE_DATA>/coco_captioning`).
  It reads them with `h5py`. `write_checksums(folder)` records the files' SHA-256 in
  `SHA256SUMS` beside them; `load_coco` checks them when that list exists.

Students write the model, the loss and sampling in the notebook; this module holds only data, the training loop
(the course's one Trainer) and BLEU.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from dlcourse.threads import torch_threads
from dlcourse.training import BatchLoss, History, Recipe, ShuffledBatches, Trainer, TrainerConfig, quick_mode
from dlcourse.utils import seed_everything

NULL, START, END, UNK = 0, 1, 2, 3
SPECIAL = ["<NULL>", "<START>", "<END>", "<UNK>"]
STANDIN_LABEL = "stand-in shapes (procedurally generated, not COCO)"

# The stand-in's grammar.
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (235, 225, 40),
           "purple": (150, 60, 210), "orange": (245, 140, 20), "white": (240, 240, 240)}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SIZES = {"large": 13, "small": 7}  # box side in pixels
WORDS = SPECIAL + ["a", "large", "small", *COLOURS, *SHAPES, "left", "of", "above"]
IMAGE_SIZE, PATCH, FEATURE_DIM = 32, 8, 64
CAPTION_TOKENS = 16  # <START> + at most 12 words + <END>, padded with <NULL> to 16


@dataclass
class CaptioningData:
    """One captioning dataset. `<split>_captions` (N, T) word ids (<START> ... <END> <NULL>...), `<split>_image_idxs`
    (N,) the image of each caption, `<split>_features` (num_images, P, D) float; images (num_images, H, W, 3) uint8
    (the stand-in) or URLs (COCO) for display; `source` says which data it is."""

    train_captions: torch.Tensor
    train_image_idxs: torch.Tensor
    train_features: torch.Tensor
    val_captions: torch.Tensor
    val_image_idxs: torch.Tensor
    val_features: torch.Tensor
    idx_to_word: list[str]
    source: str
    train_images: np.ndarray | None = None
    val_images: np.ndarray | None = None
    train_urls: list[str] | None = None
    val_urls: list[str] | None = None
    word_to_idx: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.word_to_idx = {w: i for i, w in enumerate(self.idx_to_word)}

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, P, D) of each caption's image, captions (N, T)) of split `name` ("train" or "val")."""
        features, idxs = getattr(self, f"{name}_features"), getattr(self, f"{name}_image_idxs")
        return features[idxs], getattr(self, f"{name}_captions")


def decode_captions(captions: torch.Tensor, idx_to_word: list[str]) -> list[str]:
    """Word-id rows (N, T) -> strings: stops at <END>, leaves out <NULL> and <START>."""
    texts = []
    for row in captions.tolist():
        words = []
        for t in row:
            if t == END:
                break
            if t not in (NULL, START):
                words.append(idx_to_word[t])
        texts.append(" ".join(words))
    return texts


# -- the stand-in ---------------------------------------------------------------------------------------------
def _draw(draw, shape: str, x: int, y: int, s: int, colour: tuple[int, int, int]) -> None:
    if shape == "circle":
        draw.ellipse([x, y, x + s - 1, y + s - 1], fill=colour)
    elif shape == "square":
        draw.rectangle([x, y, x + s - 1, y + s - 1], fill=colour)
    elif shape == "triangle":
        draw.polygon([(x + (s - 1) / 2, y), (x, y + s - 1), (x + s - 1, y + s - 1)], fill=colour)
    elif shape == "diamond":
        h = (s - 1) / 2
        draw.polygon([(x + h, y), (x + s - 1, y + h), (x + h, y + s - 1), (x, y + h)], fill=colour)
    else:  # cross
        t = max(1, s // 3)
        draw.rectangle([x + (s - t) // 2, y, x + (s - t) // 2 + t - 1, y + s - 1], fill=colour)
        draw.rectangle([x, y + (s - t) // 2, x + s - 1, y + (s - t) // 2 + t - 1], fill=colour)


def _scene(rng: np.random.Generator) -> list[tuple[str, str, str, int, int]] | None:
    """1-3 shapes (size, colour, shape, x, y) that do not overlap and whose order the caption can state clearly."""
    n = int(rng.choice([1, 2, 3], p=[0.2, 0.45, 0.35]))
    objects: list[tuple[str, str, str, int, int]] = []
    for _ in range(n):
        size = str(rng.choice(list(SIZES)))
        s = SIZES[size]
        for _attempt in range(50):
            x, y = (int(v) for v in rng.integers(0, IMAGE_SIZE - s + 1, size=2))
            if all(x + s + 1 <= ox or ox + SIZES[osz] + 1 <= x or y + s + 1 <= oy or oy + SIZES[osz] + 1 <= y
                   for osz, _, _, ox, oy in objects):
                break
        else:
            return None
        objects.append((size, str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)), x, y))
    centre = lambda o: (o[3] + SIZES[o[0]] / 2, o[4] + SIZES[o[0]] / 2)  # noqa: E731
    if n == 2:
        (ax, ay), (bx, by) = centre(objects[0]), centre(objects[1])
        if abs(abs(ax - bx) - abs(ay - by)) < 3:  # neither clearly beside nor clearly above
            return None
    if n == 3:
        xs = sorted(centre(o)[0] for o in objects)
        if min(xs[1] - xs[0], xs[2] - xs[1]) < 4:
            return None
    return objects


def _caption(objects) -> list[str]:
    centre = lambda o: (o[3] + SIZES[o[0]] / 2, o[4] + SIZES[o[0]] / 2)  # noqa: E731
    if len(objects) == 1:
        size, colour, shape = objects[0][:3]
        return ["a", size, colour, shape]
    if len(objects) == 2:
        (ax, ay), (bx, by) = centre(objects[0]), centre(objects[1])
        if abs(ax - bx) > abs(ay - by):
            first, second = sorted(objects, key=lambda o: centre(o)[0])
            relation = ["left", "of"]
        else:
            first, second = sorted(objects, key=lambda o: centre(o)[1])
            relation = ["above"]
        return ["a", *first[:3], *relation, "a", *second[:3]]
    ordered = sorted(objects, key=lambda o: centre(o)[0])  # three shapes: colours and shapes, left to right
    words = ["a", *ordered[0][1:3]]
    for o in ordered[1:]:
        words += ["left", "of", "a", *o[1:3]]
    return words


@functools.lru_cache(maxsize=1)
def _patch_embedding(seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """The fixed patch embedding: (PATCH*PATCH*3, FEATURE_DIM) random matrix and (P, FEATURE_DIM) position codes."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((PATCH * PATCH * 3, FEATURE_DIM)) / PATCH  # a full patch's code has a norm ~ 1.5 per column
    grid = IMAGE_SIZE // PATCH
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    freqs = np.arange(1, FEATURE_DIM // 4 + 1) * (math.pi / (2 * grid))
    position = np.concatenate([np.sin(rows[:, None] * freqs), np.cos(rows[:, None] * freqs),
                               np.sin(cols[:, None] * freqs), np.cos(cols[:, None] * freqs)], axis=1)
    return weight.astype(np.float32), position.astype(np.float32)


def patch_features(images: np.ndarray) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 -> (N, 16, 64) float: the fixed patch embedding plus each patch's position code."""
    weight, position = _patch_embedding()
    n, grid = len(images), IMAGE_SIZE // PATCH
    patches = (images.astype(np.float32) / 255.0).reshape(n, grid, PATCH, grid, PATCH, 3)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(n, grid * grid, PATCH * PATCH * 3)
    return torch.from_numpy(patches @ weight + position)


def _render(num: int, rng: np.random.Generator) -> tuple[np.ndarray, torch.Tensor]:
    from PIL import Image, ImageDraw

    images = np.zeros((num, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    captions = torch.full((num, CAPTION_TOKENS), NULL, dtype=torch.long)
    index = {w: i for i, w in enumerate(WORDS)}
    i = 0
    while i < num:
        objects = _scene(rng)
        if objects is None:
            continue
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
        draw = ImageDraw.Draw(image)
        for size, colour, shape, x, y in objects:
            _draw(draw, shape, x, y, SIZES[size], COLOURS[colour])
        images[i] = np.asarray(image)
        ids = [START] + [index[w] for w in _caption(objects)] + [END]
        captions[i, :len(ids)] = torch.tensor(ids)
        i += 1
    return images, captions


@functools.lru_cache(maxsize=4)
def make_standin(num_train: int = 2000, num_val: int = 500, seed: int = 0) -> CaptioningData:
    """The procedurally generated stand-in (one caption per image), the same for the same arguments."""
    rng = np.random.default_rng(seed)
    train_images, train_captions = _render(num_train, rng)
    val_images, val_captions = _render(num_val, rng)
    return CaptioningData(train_captions=train_captions, train_image_idxs=torch.arange(num_train),
                          train_features=patch_features(train_images), val_captions=val_captions,
                          val_image_idxs=torch.arange(num_val), val_features=patch_features(val_images),
                          idx_to_word=list(WORDS), source=STANDIN_LABEL, train_images=train_images, val_images=val_images)


def fresh_standin_split(num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, captions) of `num` new stand-in images drawn from `seed`: the grader draws its held-out split from
    a secret seed, so no split a notebook can make (make_standin's seed 0) is the one scored."""
    images, captions = _render(num, np.random.default_rng(seed))
    return patch_features(images), captions


def small_subset(data: CaptioningData, num: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, captions) of the first `num` training captions: the small subset a model should overfit."""
    features, captions = data.split("train")
    return features[:num], captions[:num]


# -- COCO (CS231n's captioning subset) ----------------------------------------------------------------------
COCO_FILES = ("coco2014_captions.h5", "coco2014_vocab.json", "train2014_urls.txt", "val2014_urls.txt",
              "train2014_vgg16_fc7_pca.h5", "val2014_vgg16_fc7_pca.h5")
CHECKSUM_FILE = "SHA256SUMS"


def coco_folder() -> Path:
    """Where the COCO captioning files are: `DLCOURSE_COCO`, else `<DLCOURSE_DATA>/coco_captioning`."""
    from dlcourse.data import data_root

    return Path(os.environ.get("DLCOURSE_COCO") or data_root() / "coco_captioning").expanduser()


def coco_available(folder: Path | None = None) -> bool:
    folder = folder or coco_folder()
    return all((folder / name).exists() for name in COCO_FILES)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path | None = None) -> Path:
    """Record the SHA-256 of the COCO files in `folder/SHA256SUMS` (`sha256sum -c` reads it too)."""
    folder = folder or coco_folder()
    lines = [f"{_sha256(folder / name)}  {name}" for name in COCO_FILES]
    (folder / CHECKSUM_FILE).write_text("\n".join(lines) + "\n")
    return folder / CHECKSUM_FILE


def verify_checksums(folder: Path) -> None:
    """Raise ValueError naming any file whose SHA-256 differs from `folder/SHA256SUMS` (nothing when there is none)."""
    listing = folder / CHECKSUM_FILE
    if not listing.exists():
        return
    for line in listing.read_text().splitlines():
        expected, name = line.split(maxsplit=1)
        if _sha256(folder / name.strip()) != expected:
            raise ValueError(f"{folder / name.strip()} does not match its SHA-256 in {listing}")


def load_coco(folder: Path | None = None, max_train: int | None = None, pca_features: bool = True) -> CaptioningData:
    """The COCO 2014 captioning subset of CS231n from `folder` (see the module docstring). Features are (N, 1, D)."""
    folder = folder or coco_folder()
    if not coco_available(folder):
        raise FileNotFoundError(f"no COCO captioning files in {folder} (need {', '.join(COCO_FILES)}); set DLCOURSE_COCO")
    verify_checksums(folder)
    import h5py  # only for COCO

    vocab = json.loads((folder / "coco2014_vocab.json").read_text())
    suffix = "_pca" if pca_features else ""
    splits: dict[str, Any] = {}
    with h5py.File(folder / "coco2014_captions.h5", "r") as f:
        for split in ("train", "val"):
            captions = torch.from_numpy(np.asarray(f[f"{split}_captions"])).long()
            idxs = torch.from_numpy(np.asarray(f[f"{split}_image_idxs"])).long()
            if split == "train" and max_train:
                captions, idxs = captions[:max_train], idxs[:max_train]
            splits[split] = (captions, idxs)
    features = {}
    for split in ("train", "val"):
        with h5py.File(folder / f"{split}2014_vgg16_fc7{suffix}.h5", "r") as f:
            features[split] = torch.from_numpy(np.asarray(f["features"])).float()[:, None, :]
    urls = {split: (folder / f"{split}2014_urls.txt").read_text().split() for split in ("train", "val")}
    return CaptioningData(train_captions=splits["train"][0], train_image_idxs=splits["train"][1],
                          train_features=features["train"], val_captions=splits["val"][0],
                          val_image_idxs=splits["val"][1], val_features=features["val"],
                          idx_to_word=list(vocab["idx_to_word"]), source="COCO 2014 (CS231n captioning subset)",
                          train_urls=urls["train"], val_urls=urls["val"])


def load_captioning(source: str = "auto") -> CaptioningData:
    """"coco", "standin", or "auto": COCO when its folder is there, else the stand-in (saying so)."""
    if source == "coco" or (source == "auto" and coco_available()):
        return load_coco()
    if source not in ("auto", "standin"):
        raise ValueError(f"source is 'auto', 'coco' or 'standin', not {source!r}")
    if source == "auto":
        print(f"No COCO captioning folder at {coco_folder()}: using the {STANDIN_LABEL}.")
    return make_standin()


# -- training and BLEU ----------------------------------------------------------------------------------------
@dataclass
class CaptionRecipe(Recipe):
    """One captioning run: Adam at a constant `lr` (as CS231n's CaptioningSolverTransformer), `batch_size` captions."""

    epochs: int = 100
    batch_size: int = 25
    lr: float = 1e-3
    weight_decay: float = 0.0

    def quick_changes(self) -> dict[str, Any]:
        """Two epochs."""
        return dict(epochs=2)


def train_captioner(model: torch.nn.Module, features: torch.Tensor, captions: torch.Tensor, recipe: CaptionRecipe,
                    loss_fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor], device="cpu",
                    log_every: int = 10) -> History:
    """Teacher forcing: `loss_fn(model(features, captions[:, :-1]), captions[:, 1:], NULL)` (the notebook's loss),
    Adam, `recipe.epochs` passes over the captions in shuffled batches (seeded by `recipe.seed`). `train_loss` per
    epoch is the mean of the batch losses. On a CPU it uses the course's thread count (`dlcourse.threads`: one thread
    unless DLCOURSE_THREADS says otherwise). With `DLCOURSE_QUICK=1` two epochs."""
    if quick_mode():
        recipe = recipe.quick()
        print("DLCOURSE_QUICK=1: quick smoke run (2 epochs); the numbers mean nothing.")
    seed_everything(recipe.seed)
    if recipe.train_subset:
        features, captions = features[:recipe.train_subset], captions[:recipe.train_subset]
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    batches = ShuffledBatches(len(captions), recipe.batch_size)
    config = TrainerConfig(recipe.epochs, recipe.lr, total_steps=recipe.epochs * len(batches), schedule="constant",
                           clip_norm=recipe.clip_norm)
    history = History()

    def forward(idx: torch.Tensor) -> BatchLoss:
        f, c = features[idx].to(device), captions[idx].to(device)
        keep = int((c != NULL).sum(dim=0).nonzero().max()) + 1  # trim columns that are <NULL> in every row
        c = c[:, :keep]
        return BatchLoss(loss_fn(model(f, c[:, :-1]), c[:, 1:], NULL))  # weight 1: train_loss is the mean batch loss

    def log(line: str) -> None:
        epoch = len(history.train_loss)
        if log_every and (epoch % log_every == 0 or epoch in (1, recipe.epochs)):
            print(line)

    return Trainer(config, model, optimizer, batches, forward, lambda: {}, history, log=log, device=device).run()


class Captioner(Protocol):
    """What caption_bleu needs of a model (the notebook's captioning models are nn.Modules with a `sample` method)."""

    def eval(self) -> Any: ...

    def sample(self, features: torch.Tensor, max_length: int) -> torch.Tensor: ...


@torch.no_grad()
def caption_bleu(model: Captioner, features: torch.Tensor, captions: torch.Tensor, idx_to_word: list[str],
                 max_length: int = CAPTION_TOKENS, device="cpu", batch_size: int = 500):
    """Corpus BLEU (sacrebleu, dlcourse.translation.corpus_bleu) of `model.sample` on `features` against `captions`
    (one reference each), sampled on the course's CPU thread count. Returns (sacrebleu score, the generated captions)."""
    from dlcourse.translation import corpus_bleu

    model.eval()
    hypotheses = []
    with torch_threads(device):
        for start in range(0, len(features), batch_size):
            hypotheses += decode_captions(model.sample(features[start:start + batch_size].to(device), max_length).cpu(),
                                          idx_to_word)
    return corpus_bleu(hypotheses, decode_captions(captions, idx_to_word)), hypotheses
