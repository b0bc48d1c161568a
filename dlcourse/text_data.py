"""Text datasets through their real sources, with the same local-copy override as the image datasets.

- IMDB (Large Movie Review Dataset): Hugging Face `datasets`, hub name `stanfordnlp/imdb`, cached in
  `<DLCOURSE_DATA>/huggingface`. With `DLCOURSE_DATA_MIRROR` set, the copy's `imdb/{train,test}.parquet`
  are read instead (same reviews and labels; the row order differs from the hub's, so shuffle before
  taking a subset).
- Multi30k task 1 (German-English): the official raw files of github.com/multi30k/dataset, downloaded
  with torchvision's md5-checked `download_url` into `<DLCOURSE_DATA>/multi30k`. With
  `DLCOURSE_DATA_MIRROR` set, they are copied from the copy's `multi30k/` and the md5s still checked.

No tokenisation happens here: each assignment tokenises in its notebook, with a maintained library.
"""
from __future__ import annotations

import gzip

from dlcourse.data import copy_atomically, data_mirror, data_root

IMDB_HUB_NAME = "stanfordnlp/imdb"
IMDB_LABELS = ["neg", "pos"]

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
# md5 of the official files; `test` is test_2016_flickr, the test set papers report on.
MULTI30K_FILES = {
    "train": ("train", {"de": "81ff90b99829c0cd4b1b587d394afd39", "en": "0065d13af80720a55ca8153d126e6627"}),
    "val": ("val", {"de": "6e0e229eb049e3fc99a1ef02fb2d5f91", "en": "2b69aa9253948ac9f67e94917272dd40"}),
    "test": ("test_2016_flickr", {"de": "efd67d314d98489b716b145475101932", "en": "ff2c0fcb4893a13bd73414306bc250ae"}),
}


def load_imdb(split: str):
    """The IMDB `split` ("train" or "test", 25 000 reviews each) as a `datasets.Dataset` with columns
    `text` (str) and `label` (ClassLabel: 0 = neg, 1 = pos)."""
    import datasets

    if split not in ("train", "test"):
        raise ValueError(f"IMDB has the splits 'train' and 'test', not {split!r}")
    cache_dir = str(data_root() / "huggingface")
    mirror = data_mirror()
    if mirror is None:
        return datasets.load_dataset(IMDB_HUB_NAME, split=split, cache_dir=cache_dir)
    path = mirror / "imdb" / f"{split}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"DLCOURSE_DATA_MIRROR={mirror} has no imdb/{split}.parquet; "
                                "unset DLCOURSE_DATA_MIRROR to download IMDB from the Hugging Face hub")
    dataset = datasets.load_dataset("parquet", data_files={split: str(path)}, split=split, cache_dir=cache_dir)
    return dataset.cast_column("label", datasets.ClassLabel(names=IMDB_LABELS))


def imdb_source() -> str:
    """Where load_imdb reads from, for reports."""
    mirror = data_mirror()
    return f"IMDB ({IMDB_HUB_NAME})" if mirror is None else f"IMDB (local copy of {IMDB_HUB_NAME}'s reviews)"


def load_multi30k(split: str) -> list[tuple[str, str]]:
    """Multi30k task 1 `split` ("train" 29 000, "val" 1 014, "test" 1 000 pairs) as (German, English)
    sentence pairs, untokenised."""
    from torchvision.datasets.utils import check_integrity, download_url

    if split not in MULTI30K_FILES:
        raise ValueError(f"Multi30k has the splits {', '.join(MULTI30K_FILES)}, not {split!r}")
    stem, md5s = MULTI30K_FILES[split]
    root = data_root() / "multi30k"
    root.mkdir(parents=True, exist_ok=True)
    mirror = data_mirror()
    lines = {}
    for language, md5 in md5s.items():
        filename = f"{stem}.{language}.gz"
        target = root / filename
        if mirror is not None and not check_integrity(str(target), md5):
            source = mirror / "multi30k" / filename
            if not source.exists():
                raise FileNotFoundError(f"DLCOURSE_DATA_MIRROR={mirror} has no multi30k/{filename}; "
                                        "unset DLCOURSE_DATA_MIRROR to download Multi30k")
            copy_atomically(source, target)
        # Checks the md5 of a file already there (copied or cached) and downloads only when it is missing.
        download_url(MULTI30K_URL + filename, str(root), filename, md5)
        with gzip.open(target, "rt", encoding="utf-8") as f:
            lines[language] = [line.rstrip("\n") for line in f]
    if len(lines["de"]) != len(lines["en"]):
        raise ValueError(f"Multi30k {split}: {len(lines['de'])} German lines but {len(lines['en'])} English lines")
    return list(zip(lines["de"], lines["en"], strict=True))
