"""Image datasets as in-memory tensors, through torchvision's real download-and-checksum path.

Where files come from:
- default: downloaded by torchvision into the cache folder (`DLCOURSE_DATA`, default `data/` in the
  course checkout, else `./data`), with torchvision's md5 checks;
- `DLCOURSE_DATA_MIRROR=/path/to/copy`: a local, read-only copy laid out like the course's
  `shared/data` folder (`FashionMNIST/raw/*.gz`, `cifar10-jpeg-q75/{train,test}.zip`). Nothing is
  downloaded. For FashionMNIST the official archives are copied into the cache and torchvision still
  checks their md5. For CIFAR-10 the mirror may hold only a JPEG re-encoding of the set: such a split
  says so in its `source` ("CIFAR-10 (JPEG q75 stand-in)"), and results on it must be reported so.

Everything is returned as uint8 tensors: small enough to hold in memory, and much faster to batch
on a CPU than a per-image PIL transform.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# Per-channel mean and std of the training split, used by `ImageSplit.normalized`. The autograder
# feeds test images through the same normalisation, so notebooks must not change it.
NORMALIZATION = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
DATASETS = tuple(NORMALIZATION)

CIFAR10_STAND_IN = "cifar10-jpeg-q75"


@dataclass
class ImageSplit:
    """One split of an image-classification dataset held in memory."""

    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    classes: list[str]
    dataset: str  # "fashion_mnist" or "cifar10"
    source: str  # human-readable provenance, e.g. "FashionMNIST (official)"

    def __len__(self) -> int:
        return len(self.labels)

    def normalized(self) -> torch.Tensor:
        """Images as float32 (N, C, H, W), scaled to [0, 1] then standardised per channel."""
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in NORMALIZATION[self.dataset])
        return (self.images.float() / 255.0 - mean) / std

    def subset(self, n: int, seed: int = 0) -> "ImageSplit":
        """A random subset of `n` examples (the whole split if `n` is larger)."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return ImageSplit(self.images[idx], self.labels[idx], self.classes, self.dataset,
                          f"{self.source}, random subset of {n}")


def data_root() -> Path:
    """The dataset cache folder: `DLCOURSE_DATA`, else `data/` of the course checkout, else `./data`."""
    if os.environ.get("DLCOURSE_DATA"):
        return Path(os.environ["DLCOURSE_DATA"]).expanduser()
    checkout_data = Path(__file__).resolve().parents[1] / "data"
    return checkout_data if checkout_data.is_dir() else Path("data")


def data_mirror() -> Path | None:
    """The local copy named by `DLCOURSE_DATA_MIRROR`, or None to download."""
    value = os.environ.get("DLCOURSE_DATA_MIRROR")
    if not value:
        return None
    mirror = Path(value).expanduser()
    if not mirror.is_dir():
        raise FileNotFoundError(
            f"DLCOURSE_DATA_MIRROR points to {mirror}, which is not a folder. "
            "Unset it to download the datasets, or point it at a copy of the course data.")
    return mirror


def copy_atomically(source: Path, target: Path) -> None:
    """Copy under a temporary name, then rename: processes loading the same data at once (parallel tests, two
    notebooks) never read a half-copied file."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.copyfile(source, partial)
    partial.replace(target)


def load_image_split(dataset: str, train: bool) -> ImageSplit:
    """Load the train (`train=True`) or test split of "fashion_mnist" or "cifar10"."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    root, mirror = data_root(), data_mirror()
    root.mkdir(parents=True, exist_ok=True)
    if dataset == "fashion_mnist":
        return _fashion_mnist(root, mirror, train)
    if mirror is not None and (mirror / CIFAR10_STAND_IN).is_dir():
        return _cifar10_stand_in(root, mirror / CIFAR10_STAND_IN, train)
    return _cifar10(root, train)


def _fashion_mnist(root: Path, mirror: Path | None, train: bool) -> ImageSplit:
    from torchvision.datasets import FashionMNIST

    if mirror is not None:
        source_raw = mirror / "FashionMNIST" / "raw"
        target_raw = root / "FashionMNIST" / "raw"
        target_raw.mkdir(parents=True, exist_ok=True)
        for archive in sorted(source_raw.glob("*.gz")):
            if not (target_raw / archive.name).exists():
                copy_atomically(archive, target_raw / archive.name)
    # With the archives in place, download=True only checks their md5 and unpacks them.
    ds = FashionMNIST(str(root), train=train, download=True)
    images = ds.data.unsqueeze(1).contiguous()  # (N, 1, 28, 28)
    return ImageSplit(images, ds.targets.long(), list(ds.classes), "fashion_mnist", "FashionMNIST (official)")


def _cifar10(root: Path, train: bool) -> ImageSplit:
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(str(root), train=train, download=True)
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    return ImageSplit(images, torch.tensor(ds.targets, dtype=torch.long), list(ds.classes), "cifar10", "CIFAR-10 (official)")


def _cifar10_stand_in(root: Path, mirror: Path, train: bool) -> ImageSplit:
    """Decode the JPEG stand-in once into a cached .npz; classes follow torchvision's order."""
    from PIL import Image

    split = "train" if train else "test"
    cache = root / CIFAR10_STAND_IN / f"{split}.npz"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(mirror / f"{split}.zip") as archive:
            names = sorted(n for n in archive.namelist() if n.lower().endswith(".jpg"))
            classes = sorted({Path(n).parent.name for n in names})
            images = np.empty((len(names), 32, 32, 3), dtype=np.uint8)
            labels = np.empty(len(names), dtype=np.int64)
            for i, name in enumerate(names):
                with archive.open(name) as f:
                    images[i] = np.asarray(Image.open(f).convert("RGB"))
                labels[i] = classes.index(Path(name).parent.name)
        partial = cache.with_name(f"{cache.stem}.{os.getpid()}.partial.npz")
        np.savez(partial, images=images, labels=labels, classes=np.array(classes))
        partial.replace(cache)  # atomic: another process decoding at the same time never reads half a file
    stored = np.load(cache)
    pixels = torch.from_numpy(stored["images"]).permute(0, 3, 1, 2).contiguous()
    return ImageSplit(pixels, torch.from_numpy(stored["labels"]), [str(c) for c in stored["classes"]],
                      "cifar10", "CIFAR-10 (JPEG q75 stand-in)")


def random_crop_flip(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Batch augmentation: random translation by up to `padding` pixels and random horizontal flip.

    x: (B, C, H, W) float. Runs on whatever device `x` is on.
    """
    B, _, H, W = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4, mode="reflect")
    dy, dx = (torch.randint(0, 2 * padding + 1, (2,)).tolist())
    out = padded[:, :, dy:dy + H, dx:dx + W]
    flip = torch.rand(B, device=x.device) < 0.5
    return torch.where(flip.view(B, 1, 1, 1), out.flip(3), out)
