"""Saving a trained model the way the autograder reads it: safetensors weights + JSON config.

The grader rebuilds the model as `ModelClass(ConfigClass(**config))`, loads the weights and runs
it on the test split. Both files are plain data (no pickle), so loading them runs no code.

The JSON is one flat object: the config's fields plus `FORMAT_KEY` (the version of this layout, so that a
later change can still read older submissions). `constructor_arguments` checks the version and returns the
config without it; a file without the key is version 0 (written before versions existed) and reads the same.
Version 2 renamed two configs' width fields to the names every notebook uses (`d_model`, `d_ff`); a file of an
older version is read with those fields renamed (`RENAMED_IN_2`), so a model saved with an earlier release still
builds the current config class.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT_KEY = "dlcourse_format"  # not a plausible field name of a student's config class
FORMAT_VERSION = 2
READABLE_VERSIONS = (0, 1, 2)  # 0: no FORMAT_KEY (files saved before it existed); 1: the same fields plus FORMAT_KEY;
# 2: ViTConfig's and CaptioningConfig's widths named d_model and d_ff
RENAMED_IN_2 = {  # config class -> {field name before version 2: its name since}
    "ViTConfig": {"embed_dim": "d_model", "mlp_dim": "d_ff"},
    "CaptioningConfig": {"embed_dim": "d_model", "ff_dim": "d_ff"},
}


def write_config(config: dict[str, Any], path: Path) -> None:
    """Write `config` (plain values) as `path`, stamped with the format version."""
    if FORMAT_KEY in config:
        raise ValueError(f"a config field may not be named {FORMAT_KEY!r}: save_model stores the file's format under it")
    path.write_text(json.dumps({FORMAT_KEY: FORMAT_VERSION, **config}, indent=2) + "\n")


def constructor_arguments(saved: Any, config_class: str | None = None) -> dict[str, Any]:
    """The config arguments in a parsed `<name>.json` (what `write_config` wrote, or an older file): the object
    without its format key, the fields of `config_class` (the name of the config class it builds) that an older
    version named otherwise renamed to today's names. Raises ValueError for anything else, a version included
    that this code cannot read."""
    if not isinstance(saved, dict):
        raise ValueError(f"a saved model config is a JSON object, not {type(saved).__name__}")
    version = saved.get(FORMAT_KEY, 0)
    if version not in READABLE_VERSIONS:
        raise ValueError(f"saved with format {version!r}; this dlcourse reads formats {', '.join(map(str, READABLE_VERSIONS))}")
    renamed: dict[str, str] = RENAMED_IN_2.get(config_class or "", {}) if version < 2 else {}
    return {renamed.get(str(k), str(k)): v for k, v in saved.items() if k != FORMAT_KEY}  # (JSON keys are strings)


def save_model(model: torch.nn.Module, config: Any, name: str, folder: str | Path = ".") -> tuple[Path, Path]:
    """Write `<name>.safetensors` and `<name>.json` into `folder` and return both paths.

    `config` is a dataclass (or a dict) holding every constructor argument of the model.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):  # a dataclass instance, not its class
        config_dict = dataclasses.asdict(config)
    else:
        config_dict = dict(config)
    weights_path, config_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path))
    write_config(config_dict, config_path)
    print(f"Saved {weights_path} and {config_path}")
    return weights_path, config_path


def load_model_files(name: str, folder: str | Path = ".",
                     config_class: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read back what `save_model` wrote: (state_dict, config arguments without the format key, an older file's
    fields renamed as `config_class` (its name) names them today)."""
    folder = Path(folder)
    state = load_file(str(folder / f"{name}.safetensors"))
    config = constructor_arguments(json.loads((folder / f"{name}.json").read_text()), config_class)
    return state, config
