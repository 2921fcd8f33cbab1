"""The backbone registry, the common classifier wrapper and local-weights loading.

Every backbone is a :class:`BackboneClassifier`: a feature extractor that maps a normalised image batch
``B x 3 x H x W`` to a pooled embedding ``B x D`` (``.embed(x)``) and a linear head on top (``forward(x)`` returns
logits ``B x num_classes``). Families register a factory with :func:`register_backbone` (or a timm model with :func:`register_timm_backbone`),
naming it once; users build models with :func:`create_backbone`.

Weights, in order of precedence:

- ``weights=PATH``: a local ``.safetensors`` or ``.pth``/``.pt``/``.bin`` state dict (loaded with
  ``torch.load(weights_only=True)``, never unpickling arbitrary objects). A dfkit checkpoint (keys ``model.*``) restores
  the whole classifier; any other state dict (e.g. timm's own ``model.safetensors``) is loaded into the feature
  extractor, dropping the source's classifier.
- ``pretrained=True`` (``dfkit train --pretrained``): timm's weights, which **need the internet**: first one TCP
  connection to where they come from (the Hugging Face hub, ``$HF_ENDPOINT``, or the model's download URL; through
  the ``https`` proxy when one is set) is tried, waiting at most :data:`REACH_TIMEOUT_S`; reachable, timm downloads
  as usual. Unreachable (or ``HF_HUB_OFFLINE`` set), weights already in the local cache (the hub cache, or torch
  hub's ``checkpoints/`` for URL weights) are used; else one line says so and names ``--weights PATH`` and
  ``--scratch`` (offline this takes about a second; timm's own retries took ~50 s).
- neither (the default): the model trains from scratch, and a message says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dfkit.registry import Registry

logger = logging.getLogger("dfkit.train")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneClassifier(nn.Module):
    """A feature extractor plus a linear classification head.

    Attributes: ``features`` (module: image batch -> pooled embedding), ``head`` (``nn.Linear``), ``embed_dim``,
    ``num_classes``, ``backbone_name`` (the registered name, set by :func:`create_backbone`), ``img_size`` (the
    default input side), ``mean``/``std`` (the input normalisation the weights expect) and ``weights_source``
    (``"scratch"``, ``"timm-pretrained"`` or a path).
    """

    def __init__(
        self,
        features: nn.Module,
        embed_dim: int,
        num_classes: int,
        *,
        img_size: int,
        backbone_name: str = "",
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.features = features
        self.embed_dim = int(embed_dim)
        self.num_classes = int(num_classes)
        self.backbone_name = backbone_name
        self.img_size = int(img_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.weights_source = "scratch"
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.head = nn.Linear(self.embed_dim, self.num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding ``B x embed_dim`` (before the head; not normalised)."""
        return self.features(x)

    def classify(self, emb: torch.Tensor) -> torch.Tensor:
        """Logits from an embedding computed by :meth:`embed`."""
        return self.head(self.dropout(emb))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))

    def config(self) -> dict[str, Any]:
        """What :func:`create_backbone` needs to rebuild this model (stored in checkpoint metadata)."""
        return {
            "backbone": self.backbone_name,
            "num_classes": self.num_classes,
            "img_size": self.img_size,
            "embed_dim": self.embed_dim,
            "mean": list(self.mean),
            "std": list(self.std),
            "weights_source": self.weights_source,
        }


Factory = Callable[..., BackboneClassifier]


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: its factory and facts for ``list_backbones``/docs."""

    name: str
    factory: Factory
    family: str
    default_img_size: int
    timm_name: str | None = None
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


#: every backbone, by the name its registration gives; the family modules of ``dfkit/train/backbones/`` are
#: imported on first lookup
BACKBONES: Registry[BackboneSpec] = Registry("backbone", "dfkit.train.backbones", named_by="argument",
                                             skip=("registry",))


def register_backbone(
    name: str,
    *,
    family: str,
    default_img_size: int,
    timm_name: str | None = None,
    description: str = "",
    tags: tuple[str, ...] = (),
) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(num_classes, pretrained, img_size, **kwargs) -> BackboneClassifier`` as
    ``name`` (the one place a backbone is named: :func:`create_backbone` sets the model's ``backbone_name``).

    Factories build the architecture (and, for ``pretrained=True``, fetch timm's weights); :func:`create_backbone`
    then handles ``weights=PATH`` and the from-scratch message, so factories need not. A taken name is refused.
    """

    def deco(factory: Factory) -> Factory:
        BACKBONES.add(name, BackboneSpec(name, factory, family, default_img_size, timm_name, description,
                                         tuple(tags)))
        return factory

    return deco


def register_timm_backbone(
    name: str,
    *,
    family: str,
    default_img_size: int,
    timm_name: str | None = None,
    pass_img_size: bool = False,
    description: str = "",
    tags: tuple[str, ...] = (),
) -> None:
    """Register a timm model with our own head (:func:`timm_classifier`) as ``name``; ``timm_name`` defaults to
    ``name``. ``pass_img_size``: the model is built for the input side (ViT, Swin)."""
    register_backbone(name, family=family, default_img_size=default_img_size, timm_name=timm_name or name,
                      description=description, tags=tags)(TimmFactory(timm_name or name, pass_img_size))


@dataclass(frozen=True)
class TimmFactory:
    """The factory of a timm backbone: :func:`timm_classifier` of ``timm_name``."""

    timm_name: str
    pass_img_size: bool = False

    def __call__(self, num_classes: int, pretrained: bool = False, img_size: int = 224,
                 **kw: Any) -> BackboneClassifier:
        return timm_classifier(self.timm_name, num_classes=num_classes, pretrained=pretrained, img_size=img_size,
                               pass_img_size=self.pass_img_size, **kw)


def list_backbones(family: str | None = None) -> list[str]:
    """Registered backbone names, sorted (optionally only one family)."""
    return BACKBONES.list(None if family is None else (lambda spec: spec.family == family))


def backbone_spec(name: str) -> BackboneSpec:
    """The registered spec of ``name``; :class:`~dfkit.registry.UnknownNameError` (a DfkitError and a KeyError)
    listing the known backbones otherwise."""
    return BACKBONES.get(name)


def create_backbone(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    weights: str | Path | None = None,
    img_size: int | None = None,
    **kwargs: Any,
) -> BackboneClassifier:
    """Build a registered backbone with a ``num_classes`` head.

    Args:
        name: a name from :func:`list_backbones` (e.g. ``"tiny"``, ``"efficientnet_b0"``).
        num_classes: size of the classification head.
        pretrained: use timm's pretrained weights; **needs the internet** (downloads from the Hugging Face hub).
        weights: a local ``.safetensors``/``.pth`` state dict (see the module docstring); takes precedence over
            ``pretrained``.
        img_size: the input side the model is built/used for (defaults to the backbone's own); ViT and Swin build
            their position embeddings/windows for it, CNNs accept any size.
        **kwargs: passed to the family factory (e.g. ``drop_rate``).
    """
    spec = backbone_spec(name)
    size = int(img_size or spec.default_img_size)
    use_timm_pretrained = bool(pretrained) and weights is None
    model = spec.factory(num_classes=num_classes, pretrained=use_timm_pretrained, img_size=size, **kwargs)
    model.backbone_name = spec.name
    if weights is not None:
        load_local_weights(model, weights)
        model.weights_source = str(weights)
        logger.info("%s: loaded local weights from %s", name, weights)
    elif use_timm_pretrained:
        model.weights_source = "timm-pretrained"
    else:
        model.weights_source = "scratch"
        logger.warning("training %s from scratch (no pretrained weights: offline default)", name)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# local weights

def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file loaded with ``weights_only=True`` (no arbitrary pickle)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    import pickle

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused an object: loading it would need arbitrary pickle
        why = next((ln.strip() for ln in str(e).splitlines() if ln.strip().startswith("Unsupported")), "")
        raise ValueError(f"{path}: refused: not a plain state dict, loading it would need pickle (which can run "
                         f"code)" + (f" ({why})" if why else "")) from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path}: not a readable weights file ({type(e).__name__}: {first})") from None
    for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_local_weights(model: BackboneClassifier, path: str | Path) -> None:
    """Load ``path`` into ``model``.

    A dfkit checkpoint (its ``model.*`` keys) restores the whole classifier; another state dict is loaded into
    ``model.features``. Tensors whose name or shape does not fit (e.g. a 1000-class ImageNet head, or the head of a
    dfkit model with other classes) are dropped and reported, so a checkpoint can seed a model with a new head.
    Raises if nothing matches."""
    sd = read_state_dict(path)
    inner = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    if inner:  # a dfkit checkpoint (model.*, optimizer.*, ...)
        sd = inner
        own = model.state_dict()
        if set(sd) == set(own) and all(sd[k].shape == own[k].shape for k in own):
            model.load_state_dict(sd, strict=True)
            return
    if any(k.startswith(("features.", "head.")) for k in sd):
        target: nn.Module = model
    else:
        target = model.features
    own = target.state_dict()
    fitting = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise ValueError(f"{path}: no tensor matches backbone {model.backbone_name!r} (wrong file or architecture?)")
    skipped = sorted(set(sd) - set(fitting))
    missing = sorted(set(own) - set(fitting))
    target.load_state_dict(fitting, strict=False)
    if skipped:
        logger.info("%s: ignored %d tensors from %s (e.g. %s)", model.backbone_name, len(skipped), path, skipped[:3])
    if missing:
        logger.warning("%s: %d backbone tensors not in %s keep their initialisation (e.g. %s)",
                       model.backbone_name, len(missing), path, missing[:3])


# ----------------------------------------------------------------------------------------------------------------------
# timm helper shared by the timm-based families

def timm_classifier(
    timm_name: str,
    *,
    num_classes: int,
    pretrained: bool,
    img_size: int,
    pass_img_size: bool = False,
    drop_rate: float = 0.0,
    backbone_name: str = "",
    **timm_kwargs: Any,
) -> BackboneClassifier:
    """``timm.create_model(timm_name, pretrained=pretrained, num_classes=0)`` (pooled features) + our own head.

    ``pretrained=True`` needs the internet, or the weights in the local cache (see the module docstring).
    """
    import timm

    if pass_img_size:
        timm_kwargs["img_size"] = img_size
    if pretrained:
        timm_kwargs.update(_pretrained_source(timm_name))  # offline and not cached: one line, at once
    try:
        features = timm.create_model(timm_name, pretrained=pretrained, num_classes=0, **timm_kwargs)
    except Exception as e:  # the host answered, the download failed
        if pretrained:
            first = (str(e).strip().splitlines() or [""])[0]
            raise PretrainedWeightsError(
                f"could not fetch timm's pretrained weights for {timm_name!r} ({e.__class__.__name__}: {first}): "
                f"--pretrained needs the internet; {OFFLINE_HINT}") from e
        raise
    cfg = getattr(features, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    return BackboneClassifier(
        features, features.num_features, num_classes,
        backbone_name=backbone_name, img_size=img_size, mean=mean, std=std, drop_rate=drop_rate,
    )


# ----------------------------------------------------------------------------------------------------------------------
# where timm's pretrained weights come from, and whether that can be reached

#: seconds the one connection attempt to the weights' host may take before ``--pretrained`` gives up
REACH_TIMEOUT_S = 3.0
#: what to do instead, named as the command line spells it
OFFLINE_HINT = ("offline, pass --weights PATH (a local .safetensors/.pth state dict) or train from scratch "
                "(--scratch)")


class PretrainedWeightsError(RuntimeError):
    """timm's pretrained weights cannot be had (offline and not cached, or the download failed): one line naming
    ``--weights PATH``."""


def _weights_location(timm_name: str) -> tuple[str | None, str | None, bool]:
    """``(URL of the host the weights come from, a locally cached weights file or None, from the hub?)`` for a timm
    model's default pretrained tag (``(None, None, False)`` when timm knows no weights for it)."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(timm_name)
    except (RuntimeError, KeyError, ValueError):
        cfg = None
    if cfg is None:
        return None, None, False
    if getattr(cfg, "hf_hub_id", None):
        from huggingface_hub import constants, try_to_load_from_cache

        repo, _, rev = cfg.hf_hub_id.partition("@")
        for fname in ([cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]):
            hit = try_to_load_from_cache(repo, fname, revision=rev or None)
            if isinstance(hit, str):
                return constants.ENDPOINT, hit, True
        return constants.ENDPOINT, None, True
    if getattr(cfg, "url", None):
        import os
        from urllib.parse import urlsplit

        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlsplit(cfg.url).path)
        return cfg.url, (str(cached) if cached.is_file() else None), False
    return None, None, False


def unreachable(url: str, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """``None`` when a TCP connection to ``url``'s host (or to the proxy the environment sets for its scheme) opens
    within ``timeout`` seconds -- one attempt, name lookup included -- else why not, as a phrase."""
    import socket
    import threading
    import urllib.request
    from urllib.parse import urlsplit

    u = urlsplit(url)
    host, port = u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(u.scheme)
    via = ""
    if proxy and not urllib.request.proxy_bypass(host):
        pu = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        via = f" (through the proxy {pu.hostname}:{pu.port or 80})"
        host, port = pu.hostname or "", pu.port or 80
    result: dict[str, Any] = {}

    def attempt() -> None:  # in a thread: socket timeouts do not bound the name lookup
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result["ok"] = True
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=attempt, name="dfkit-reach", daemon=True)
    t.start()
    t.join(timeout)
    if result.get("ok"):
        return None
    where = f"{u.hostname}:{u.port or (443 if u.scheme == 'https' else 80)}{via}"
    if "error" in result:
        e = result["error"]
        return f"{where} cannot be reached ({e.strerror or e})"
    return f"{where} did not answer within {timeout:g} s"


def _pretrained_source(timm_name: str) -> dict[str, Any]:
    """Extra ``timm.create_model`` arguments for ``pretrained=True``: none when the weights' host answers; the cached
    file (``pretrained_cfg_overlay``) when it does not; :class:`PretrainedWeightsError` when it does not and nothing
    is cached."""
    url, cached, hub = _weights_location(timm_name)
    if url is None:
        return {}  # timm knows no weights for it and says so
    why = None
    if hub:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            why = "HF_HUB_OFFLINE is set"
    if why is None:
        why = unreachable(url)
    if why is None:
        return {}
    if cached is not None:
        logger.info("%s: %s; using the cached pretrained weights %s", timm_name, why, cached)
        return {"pretrained_cfg_overlay": {"file": cached}}
    raise PretrainedWeightsError(f"timm's pretrained weights for {timm_name!r} are not in the local cache and {why}: "
                                 f"--pretrained needs the internet; {OFFLINE_HINT}")
