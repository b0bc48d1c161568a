"""Saving a trained model the way the autograder reads it: safetensors weights + JSON config.

The grader rebuilds the model as `ModelClass(ConfigClass(**config))`, loads the weights and runs
it on the test split. Both files are plain data (no pickle), so loading them runs no code.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def save_model(model: torch.nn.Module, config: Any, name: str, folder: str | Path = ".") -> tuple[Path, Path]:
    """Write `<name>.safetensors` and `<name>.json` into `folder` and return both paths.

    `config` is a dataclass (or a dict) holding every constructor argument of the model.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    weights_path, config_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path))
    config_path.write_text(json.dumps(config_dict, indent=2) + "\n")
    print(f"Saved {weights_path} and {config_path}")
    return weights_path, config_path


def load_model_files(name: str, folder: str | Path = ".") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read back what `save_model` wrote: (state_dict, config_dict)."""
    folder = Path(folder)
    state = load_file(str(folder / f"{name}.safetensors"))
    config = json.loads((folder / f"{name}.json").read_text())
    return state, config
