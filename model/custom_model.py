"""A custom model a member offers the collaboration (components/custom_model.py), as its config says.

The model's code is a folder of the project, models/<name>/, with its train.py (and serve.py for
inference); the privacy settings follow AWS::CleanRoomsML::ConfiguredModelAlgorithmAssociation's
ranges (artifacts and exports 0.01-10 GB, inference output 0.01-50 GB, metrics noise HIGH, MEDIUM,
LOW or NONE, container logs to at most five accounts).
"""

from __future__ import annotations

from dataclasses import dataclass

from model.errors import ConfigError
from model.stackfiles import ROOT

MODELS_DIR = ROOT / "models"


@dataclass(frozen=True)
class CustomModelSpec:
    name: str
    description: str
    train_tag: str
    inference_tag: str | None
    images_pushed: bool
    metrics: tuple[str, ...]
    metrics_noise: str
    logs_to: tuple[str, ...]
    max_artifact_gb: float
    exports: tuple[str, ...]
    max_export_gb: float
    max_inference_output_gb: float


def check_model_folder(name: str, inference: bool) -> None:
    folder = MODELS_DIR / name
    needed = ["train.py", "Dockerfile", *(["serve.py", "Dockerfile.inference"] if inference else [])]
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        available = sorted(p.name for p in MODELS_DIR.iterdir() if p.is_dir()) if MODELS_DIR.is_dir() else []
        raise ConfigError("customModel.name", f"models/{name}/ lacks {', '.join(missing)} (the container's code); "
                          f"models available: {available}")
