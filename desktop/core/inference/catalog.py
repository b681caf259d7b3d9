"""Which model: by key, by task, by .onnx path, or the assay a folder looks like (read from the
models' metadata; the chosen one is loaded)."""

from __future__ import annotations

from pathlib import Path

from desktop.core.errors import ModelError
from desktop.core.inference.folder import guess_task
from desktop.core.inference.model import Model, discover_models
from desktop.core.inference.model_info import BLOOD


def resolve_model(model: Model | str | Path | None, folder: Path | None = None) -> Model:
    """A Model from a key, a task, an .onnx path, or (None) the assay the folder looks like."""
    if isinstance(model, Model):
        return model
    if model is not None and (Path(model).suffix == ".onnx"):
        loaded = Model(Path(model))
        if loaded.info.site:  # a site model is used only beside the base it names
            from desktop.core.inference.site_check import check_site_info

            check_site_info(loaded.info, {i.sha256 for i in discover_models()[0] if not i.site})
        return loaded
    infos, problems = discover_models()
    if not infos:
        raise ModelError("no usable model found in resources/models or the user models folder"
                         + (f" ({'; '.join(problems)})" if problems else ""))
    if model:
        match = [i for i in infos if str(model) in (i.key, i.task)]
        if not match:
            raise ModelError(f"no model named {model!r}; available: {', '.join(i.key for i in infos)}")
        return Model(match[0].path)
    blood = next((i for i in infos if i.task == BLOOD and not i.site), None)
    blood_model = Model(blood.path) if blood is not None else None
    task = (guess_task(folder, blood_model) if folder is not None else None) or BLOOD
    if task == BLOOD and blood_model is not None:
        return blood_model
    return Model(next((i for i in infos if i.task == task), infos[0]).path)
