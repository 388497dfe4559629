"""Whether a run directory is resumed, started afresh, or refused.

A run resumes only with the options that define it (`FitConfig.resume_key`)
and the same data; anything else would mix two trainings in one directory.
"""

from __future__ import annotations

from galaxyprep import InputError

from ..config import FitConfig
from ..run_dir import RunDir, new_state
from .data_record import DATA_KEYS


def prepare_run_dir(run: RunDir, config: FitConfig, record: dict) -> dict:
    """The state to start from: a fresh one, or the run's own when it can be resumed."""
    problem = run.problem()
    if problem is not None and not (config.overwrite and run.path.is_dir()):
        hint = "; use --overwrite to start a new run there, or another --out" if run.path.is_dir() else ""
        raise InputError(run.path, problem + hint)
    state = run.recover() if run.path.exists() else None
    if state is None or state.get("epochs_done", 0) == 0:
        if run.path.exists():
            run.clear()
        return new_state()
    if config.overwrite:
        run.clear()
        return new_state()
    old = run.read_config() or {}
    differences = record_differences(old, record)
    if differences:
        raise InputError(run.path, "holds a run with other options (" + "; ".join(differences) +
                         "); use --overwrite to start again, or another --out")
    if "damaged" in state:
        raise InputError(run.path, f"cannot resume: {state['damaged']}; use --overwrite to start again")
    return state


def record_differences(old: dict, new: dict) -> list[str]:
    """What differs between two config.json records in what defines a run, said for the user."""
    out = []
    old_cfg = FitConfig.from_dict(old["config"]).resume_key() if "config" in old else {}
    new_cfg = FitConfig.from_dict(new["config"]).resume_key()
    for key, value in new_cfg.items():
        if old_cfg.get(key) != value:
            out.append(f"{key}: {old_cfg.get(key)!r} -> {value!r}")
    # Under a strategy --batch-size is per replica: other replicas, another global batch.
    old_replicas, new_replicas = (r.get("distribute", {}).get("replicas", 1) for r in (old, new))
    if old_replicas != new_replicas:
        out.append(f"replicas: {old_replicas} -> {new_replicas} (the global batch is --batch-size x replicas)")
    old_data, new_data = old.get("data", {}), new["data"]
    if old_data.get("image_size") != new_data["image_size"]:
        out.append(f"image size: {old_data.get('image_size')} -> {new_data['image_size']}")
    elif any(_comparable(key, old_data.get(key)) != _comparable(key, new_data[key]) for key in DATA_KEYS):
        out.append(f"the data file holds other images ({old_data.get('path')} -> {new_data['path']})")
    elif "labels" in old_data and old_data["labels"] != new_data.get("labels"):  # recorded since 2026-12
        out.append(f"the data file has other label columns ({old_data.get('path')} -> {new_data['path']})")
    old_start, new_start = old.get("start", {}), new.get("start", {})
    if old_start.get("sha256") != new_start.get("sha256"):
        out.append(f"the model fine-tuned from: {old_start.get('source')} -> {new_start.get('source')} (other weights)")
    old_init, new_init = old.get("init", {}), new.get("init", {})
    if old_init.get("sha256") != new_init.get("sha256"):
        out.append(f"the weights started from: {old_init.get('source')} -> {new_init.get('source')} (other weights)")
    return out


def _comparable(key: str, value):
    """Runs recorded before 2026-12 kept mean and std to 6 decimals: compare at that precision."""
    if key in ("mean", "std") and isinstance(value, list):
        return [round(float(v), 6) for v in value]
    return value
