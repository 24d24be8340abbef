"""A uniform view of a timm backbone: pooled feature, [CLS] token and last spatial tokens.

The pair engine treats every network as a generic slot, so CNNs and ViTs must answer the same
questions: what is the image embedding (MLP-Head input), which tokens feed the T-Head, and what is the
grid those tokens lie on. This adapter answers them for timm ResNets, EfficientNets, MobileNets and ViTs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from torch import nn

from mokd.config import validate
from mokd.models.attention import attention_probs
from mokd.models.pos_embed import install_pos_embed

CNN_FAMILIES = ("resnet", "efficientnet", "mobilenetv3", "tinynet", "tf_efficientnet", "tf_mobilenetv3")
VIT_FAMILIES = ("vit",)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to rebuild a backbone: the timm name, its kwargs and our stem option.

    `stem_stride` sets the total stride of a CNN's stem, so that a small image still leaves a
    several-position last feature map for the T-Head at the small scale: None keeps the architecture's
    own (ResNet 4: stride-2 conv + max-pool; EfficientNet/MobileNet 2), 2 drops a ResNet's max-pool,
    1 is a CIFAR-style stem (ResNet: 3x3 stride-1 conv, no max-pool). `squeeze_excite` False removes
    every squeeze-excitation module of an EfficientNet/MobileNet (a CPU-scale option, like the
    MobileNet-v3 paper's "minimalistic" variant; the paper's networks keep theirs).
    """

    arch: str
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    stem_stride: int | None = None
    drop_path: float = 0.0
    pos_embed_interpolation: str = "dino"
    squeeze_excite: bool = True

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "BackboneSpec":
        """From a config mapping, checked against mokd/schemas/backbone.yaml (defaults filled in)."""
        cfg = validate(dict(cfg), "backbone", label="backbone config key")
        return cls(arch=cfg["arch"], timm_kwargs=dict(cfg["timm_kwargs"]), stem_stride=cfg["stem_stride"],
                   drop_path=float(cfg["drop_path"]), pos_embed_interpolation=cfg["pos_embed_interpolation"],
                   squeeze_excite=bool(cfg["squeeze_excite"]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "timm_kwargs": dict(self.timm_kwargs),
            "stem_stride": self.stem_stride,
            "drop_path": self.drop_path,
            "pos_embed_interpolation": self.pos_embed_interpolation,
            "squeeze_excite": self.squeeze_excite,
        }

    @property
    def kind(self) -> str:
        """'cnn' or 'vit', from the timm family name."""
        if self.arch.startswith(VIT_FAMILIES):
            return "vit"
        if self.arch.startswith(CNN_FAMILIES):
            return "cnn"
        raise ValueError(
            f"backbone arch {self.arch!r} is not supported; use a timm name starting with one of "
            f"{CNN_FAMILIES + VIT_FAMILIES}"
        )


@dataclass
class BackboneOutput:
    """pooled: (B, C) image embedding; tokens: (B, N, Ct) last spatial features; cls: (B, Ct) for ViTs."""

    pooled: torch.Tensor
    tokens: torch.Tensor
    cls: torch.Tensor | None
    grid: tuple[int, int]


def _set_stem_stride(model: nn.Module, arch: str, stride: int) -> None:
    """Reduce a CNN stem's total stride to `stride` (1 or 2)."""
    if arch.startswith("resnet"):
        old = model.conv1
        if not isinstance(old, nn.Conv2d):
            raise ValueError(f"stem_stride supports the plain ResNet stem only, not {arch!r}'s")
        model.maxpool = nn.Identity()
        if stride == 1:
            model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, 1, 1, bias=False)
    elif stride == 1:  # EfficientNet / MobileNet family: a 3x3 stride-2 conv_stem, no pooling
        model.conv_stem.stride = (1, 1)


SQUEEZE_EXCITE_CLASSES = ("SqueezeExcite", "SEModule", "EffectiveSEModule")


def _remove_squeeze_excite(model: nn.Module, arch: str) -> None:
    """Replace every squeeze-excitation module (timm's classes above) by an identity."""
    targets = [name for name, mod in model.named_modules() if type(mod).__name__ in SQUEEZE_EXCITE_CLASSES]
    if not targets:
        raise ValueError(f"backbone.squeeze_excite: false, but {arch!r} has no squeeze-excitation module")
    for name in targets:
        model.set_submodule(name, nn.Identity())


class Backbone(nn.Module):
    """A timm network without classifier, exposing pooled features and last-stage tokens."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        self.kind = spec.kind
        kwargs: dict[str, Any] = dict(spec.timm_kwargs)
        kwargs.setdefault("num_classes", 0)
        if spec.drop_path:
            kwargs["drop_path_rate"] = spec.drop_path
        if spec.arch.startswith("resnet"):
            kwargs.setdefault("zero_init_last", False)  # torchvision's (and the paper's) init
        if self.kind == "vit":
            kwargs.setdefault("dynamic_img_size", True)  # global and local crops of other sizes
        self.net = timm.create_model(spec.arch, pretrained=False, **kwargs)
        if self.kind == "vit":
            install_pos_embed(self.net, spec.pos_embed_interpolation)
        if spec.stem_stride is not None:
            if self.kind != "cnn":
                raise ValueError(f"stem_stride applies to CNNs only, not {spec.arch!r}")
            _set_stem_stride(self.net, spec.arch, spec.stem_stride)
        if not spec.squeeze_excite:
            _remove_squeeze_excite(self.net, spec.arch)
        if self.kind == "vit":
            self.feature_dim = self.net.embed_dim
            self.token_dim = self.net.embed_dim
        else:
            # timm's num_features disagrees with the map's width for MobileNetV3 (conv_head sits in the
            # head there), so read the width off a dry forward.
            self.feature_dim = self._map_channels()
            self.token_dim = self.feature_dim

    def _map_channels(self) -> int:
        with torch.no_grad():
            was_training = self.net.training
            self.net.eval()
            out = self.net.forward_features(torch.zeros(1, 3, 32, 32))
            self.net.train(was_training)
        return int(out.shape[1])

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        feats = self.net.forward_features(x)
        if self.kind == "vit":
            n_prefix = self.net.num_prefix_tokens
            cls = feats[:, 0]
            tokens = feats[:, n_prefix:]
            h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
            return BackboneOutput(pooled=cls, tokens=tokens, cls=cls, grid=(h, w))
        b, c, h, w = feats.shape
        return BackboneOutput(
            pooled=feats.mean(dim=(2, 3)), tokens=feats.flatten(2).transpose(1, 2), cls=None, grid=(h, w)
        )

    @property
    def patch_size(self) -> int:
        return int(self.net.patch_embed.patch_size[0])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled feature used by k-NN, t-SNE and the CNN linear probe."""
        return self.forward(x).pooled

    def last_cls_tokens(self, x: torch.Tensor, n: int = 4) -> torch.Tensor:
        """ViT: [CLS] of the last `n` blocks, each after the final norm, concatenated (DINO's linear probe)."""
        if self.kind != "vit":
            raise ValueError("last_cls_tokens is defined for ViTs only")
        outs = self.net.get_intermediate_layers(x, n=n, return_prefix_tokens=True, norm=True)
        return torch.cat([prefix[:, 0] for _, prefix in outs], dim=-1)

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """ViT: softmax attention of every block, (B, heads, 1+N, 1+N) each, recomputed from qkv."""
        if self.kind != "vit":
            raise ValueError("attention_maps is defined for ViTs only")
        net = self.net
        h = net.patch_embed(x)
        h = net._pos_embed(h)
        h = net.patch_drop(h)
        h = net.norm_pre(h)
        maps = []
        for block in net.blocks:
            maps.append(attention_probs(block, h))
            h = block(h)
        return maps


def build_backbone(cfg: dict[str, Any] | BackboneSpec) -> Backbone:
    """Build a backbone from its config mapping (keys of BackboneSpec) or a spec."""
    spec = cfg if isinstance(cfg, BackboneSpec) else BackboneSpec.from_config(cfg)
    return Backbone(spec)
