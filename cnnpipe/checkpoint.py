"""Checkpoints: plain dicts of tensors, numbers, strings and lists, saved atomically and loaded with
``torch.load(weights_only=True)``, so a checkpoint can never run code.

Layout: ``{"format": FORMAT, "version", "model": <model config dict>, "meta": <plain dict>,
"state_dict", "sha256": <digest of the state dict>, ...training state (optimizer, scheduler, RNG)...}``.
A file that is not such a dict, whose digest does not match its weights (tampered), or whose model config
differs from the current config is refused with a one-line ``UserError``.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_path
from .config import Config
from .errors import UserError
from .models import ARCH_KEYS, LEGACY_DEFAULTS, build

FORMAT = "cnnpipe-checkpoint"
VERSION = 1


class CheckpointError(UserError):
    pass


def digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor, in key order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save(path: str | Path, model: nn.Module, model_config: dict, meta: dict, **extra: Any) -> None:
    """Write a checkpoint atomically (temp file, then rename)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "model": model_config, "meta": meta,
               "state_dict": state, "sha256": digest(state), **extra}
    buf = io.BytesIO()  # serialised in memory, written with plain I/O: a full disk is an OSError
    torch.save(payload, buf)  # (torch's own writer says "[enforce fail at inline_container.cc]")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def load(path: str | Path) -> dict:
    """The checkpoint dict (tensors on CPU); refuses anything that is not an intact cnnpipe checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle with code, truncated or random bytes...
        raise CheckpointError(f"{path} is not a cnnpipe weights file (refused by weights-only loading: "
                              f"{_reason(exc)})") from None
    if (not isinstance(ck, dict) or ck.get("format") != FORMAT or "state_dict" not in ck
            or not isinstance(ck.get("model"), dict)):
        raise CheckpointError(f"{path} is not a cnnpipe checkpoint (no '{FORMAT}' format marker)")
    if ck.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ck.get('version')}, this cnnpipe reads {VERSION}")
    if digest(ck["state_dict"]) != ck.get("sha256"):
        raise CheckpointError(f"{path} has been modified: its weights do not match the stored SHA-256")
    # a checkpoint written before a model option existed was trained with that option's old value
    ck["model"] = {**LEGACY_DEFAULTS.get(ck["model"].get("kind"), {}), **ck["model"]}
    return ck


def check_model_config(stored: dict, expected: dict, path: str | Path = "checkpoint") -> None:
    """Refuse a checkpoint whose architecture differs from ``expected`` (only keys present in both count)."""
    diff = [f"{k}: checkpoint {stored.get(k)!r} vs config {v!r}" for k, v in expected.items()
            if k in stored and _plain(stored[k]) != _plain(v)]
    if diff:
        raise CheckpointError(f"{path} was trained with a different model config ({'; '.join(diff)}); "
                              "retrain or restore the matching config")


def expected_config(cfg: Config, kind: str) -> dict:
    """The model config ``cfg`` asks for (architecture keys a stored checkpoint must match; the CNN's
    ``n_classes`` comes from the data and is not included)."""
    base = {"kind": kind, "in_channels": cfg.channels, "size": cfg.feature_size}
    if kind == "cnn":
        return dict(base, channels=list(cfg.train.cnn.channels), hidden=cfg.train.cnn.hidden)
    if kind == "vae":
        return dict(base, channels=list(cfg.train.vae.channels), latent_dim=cfg.train.vae.latent_dim,
                    upsample=cfg.train.vae.upsample, encoder_slope=cfg.train.vae.encoder_slope)
    raise ValueError(f"unknown model kind {kind!r}")


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def check_shapes(model_config: dict, state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse a model config whose parameters differ from the stored weights, before allocating anything.

    The model is built on PyTorch's ``meta`` device (shapes only, no memory): a checkpoint whose weights
    are a few KB but whose config declares ``n_classes = 10**7`` would otherwise allocate gigabytes."""
    with torch.device("meta"):
        skeleton = build(model_config)
    for name, t in skeleton.state_dict().items():
        stored = state_dict.get(name)
        if stored is None or tuple(stored.shape) != tuple(t.shape):
            got = "missing" if stored is None else f"stored {tuple(stored.shape)}"
            raise CheckpointError(f"{path}: its model config asks for {name} of shape {tuple(t.shape)}, "
                                  f"the weights have it {got}; refused before building the model")


def _reason(exc: BaseException, most: int = 400) -> str:
    """One whole-sentence line from an exception: the line naming a refused global when there is one
    (torch's weights-only message), else the first; cut only at a sentence's end."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    line = next((x for x in lines if "GLOBAL" in x or "Unsupported" in x), lines[0])
    if len(line) > most:
        end = line.rfind(". ", 0, most)
        line = line[:end + 1] if end > 0 else line
    return line.rstrip(".")


def load_model(path: str | Path, device: torch.device | str = "cpu",
               expected: dict | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model stored at ``path`` (eval mode, on ``device``) and return ``(model, meta)``.

    ``meta`` holds what scoring needs: ``kind``, ``mode`` and ``transforms`` (CNN), ``classes``,
    ``model`` (the model config), ``epoch``... ``expected``: a model config the checkpoint must match.
    """
    ck = load(path)
    if expected is not None:
        check_model_config(ck["model"], expected, path)
    try:
        check_shapes(ck["model"], ck["state_dict"], path)
        model = build(ck["model"])
        model.load_state_dict(ck["state_dict"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored model config ({_reason(exc)})") from None
    meta = dict(ck.get("meta", {}), model=ck["model"], kind=ck["model"]["kind"])
    return model.to(device).eval(), meta


def load_vae(path: str | Path, device: torch.device | str = "cpu",
             expected: dict | None = None) -> tuple[nn.Module, dict]:
    """:func:`load_model` for the steps that need the VAE (denoise, generate): another model is refused."""
    model, meta = load_model(path, device, expected)
    if meta["kind"] != "vae":
        raise CheckpointError(f"{path} is a {meta['kind']} model; this step needs the VAE (vae.pt)")
    return model, meta


__all__ = ["save", "load", "load_model", "load_vae", "check_model_config", "expected_config", "digest", "CheckpointError", "ARCH_KEYS"]
