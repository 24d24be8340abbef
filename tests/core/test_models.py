"""Shapes of every paper architecture and of the heads; the pair widths are reconciled by projection."""

from __future__ import annotations

import pytest
import torch

from mokd.models.backbone import build_backbone
from mokd.models.heads import MLPHead, THead

PAPER_ARCHS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "efficientnet_b0", "mobilenetv3_large_100",
    "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
]
EXPECTED_WIDTH = {
    "resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "efficientnet_b0": 1280,
    "mobilenetv3_large_100": 960, "vit_tiny_patch16_224": 192, "vit_small_patch16_224": 384,
    "vit_base_patch16_224": 768,
}


@pytest.mark.parametrize("arch", PAPER_ARCHS)
def test_paper_backbones_pooled_tokens_and_heads(arch: str) -> None:
    torch.manual_seed(0)
    backbone = build_backbone({"arch": arch}).eval()
    x_global, x_local = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = backbone(x_global)
        out_local = backbone(x_local)
    width = EXPECTED_WIDTH[arch]
    assert backbone.feature_dim == width and out.pooled.shape == (2, width)
    if backbone.kind == "vit":
        assert out.grid == (4, 4) and out.tokens.shape == (2, 16, width) and out.cls is not None
        assert out_local.tokens.shape == (2, 4, width)  # a smaller crop works (dynamic image size)
    else:
        h, w = out.grid
        assert out.tokens.shape == (2, h * w, width) and out.cls is None
    head = MLPHead(width, 32, hidden_dim=16, bottleneck_dim=8)
    t_head = THead(width, 48, 32, depth=1, num_heads=6, base_grid=max(out.grid))
    with torch.no_grad():
        assert head(out.pooled).shape == (2, 32)
        assert t_head(out.tokens, out.grid).shape == (2, 32)
        query = t_head.query(t_head.project(out_local.tokens), out_local.cls)
        assert query.shape == (2, 48)
        assert t_head(out.tokens, out.grid, query=query).shape == (2, 32)


def test_resnets_keep_torchvision_init() -> None:
    """zero_init_last=False: the last BN of each block is not zeroed (torchvision, as the paper)."""
    net = build_backbone({"arch": "resnet18"}).net
    assert float(net.layer1[0].bn2.weight.abs().sum()) > 0


def test_small_stem_keeps_several_positions() -> None:
    backbone = build_backbone({"arch": "resnet18", "timm_kwargs": {"channels": [8, 16, 32, 64]}, "stem_stride": 1})
    assert backbone.eval()(torch.randn(1, 3, 32, 32)).grid == (4, 4)
    standard = build_backbone({"arch": "resnet18", "timm_kwargs": {"channels": [8, 16, 32, 64]}})
    assert standard.eval()(torch.randn(1, 3, 32, 32)).grid == (1, 1)


def test_tf_ported_mobile_nets_are_cnns_and_take_the_small_stem() -> None:
    """timm's TensorFlow ports (e.g. MobileNet-v3 minimal: no squeeze-excitation) build as CNNs; stem stride 1."""
    backbone = build_backbone({"arch": "tf_mobilenetv3_small_minimal_100", "stem_stride": 1}).eval()
    assert backbone.kind == "cnn"
    assert backbone(torch.randn(1, 3, 32, 32)).grid == (2, 2)
    assert build_backbone({"arch": "tf_mobilenetv3_small_minimal_100"}).eval()(torch.randn(1, 3, 32, 32)).grid == (1, 1)


def test_squeeze_excite_false_removes_every_se_module_and_only_those() -> None:
    """TinyNet-E without squeeze-excitation: no SE module left, the rest of the network (and its output) unchanged."""
    with_se = build_backbone({"arch": "tinynet_e", "stem_stride": 1}).eval()
    without = build_backbone({"arch": "tinynet_e", "stem_stride": 1, "squeeze_excite": False}).eval()
    names = {type(m).__name__ for m in without.modules()}
    assert "SqueezeExcite" not in names and "SqueezeExcite" in {type(m).__name__ for m in with_se.modules()}
    se_params = {k for k in with_se.state_dict() if ".se." in k}
    assert se_params and set(without.state_dict()) == set(with_se.state_dict()) - se_params
    # with every gate made the identity by hand, the SE network computes what the SE-free one does
    for block in with_se.modules():
        if hasattr(block, "se"):
            block.se = torch.nn.Identity()
    without.load_state_dict(with_se.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(with_se(x).pooled, without(x).pooled)
    assert without.spec.to_dict()["squeeze_excite"] is False
    with pytest.raises(ValueError, match="resnet18.*no squeeze-excitation"):
        build_backbone({"arch": "resnet18", "squeeze_excite": False})


def test_search_changes_the_embedding_and_query_position_is_dropped() -> None:
    torch.manual_seed(0)
    t_head = THead(16, 16, 10, depth=2, num_heads=2, base_grid=3)
    tokens = torch.randn(2, 9, 16)
    plain = t_head(tokens, (3, 3))
    searched = t_head(tokens, (3, 3), query=torch.randn(2, 16))
    assert plain.shape == searched.shape == (2, 10)
    assert not torch.allclose(plain, searched)


def test_unknown_backbone_key_is_named() -> None:
    with pytest.raises(ValueError, match="stem_strides"):
        build_backbone({"arch": "resnet18", "stem_strides": 1})
    with pytest.raises(ValueError, match="stem_stride"):
        build_backbone({"arch": "resnet18", "stem_stride": 3})


def test_mlp_head_defaults_are_the_papers_head() -> None:
    """Linear-GELU-Linear-GELU-Linear, std-0.02 weights, zero biases, weight-normalised prototypes."""
    torch.manual_seed(0)
    head = MLPHead(512, 4096)
    assert [type(m).__name__ for m in head.mlp] == ["Linear", "GELU", "Linear", "GELU", "Linear"]
    for m in head.mlp:
        if isinstance(m, torch.nn.Linear):
            assert m.bias is not None and torch.all(m.bias == 0)
            assert float(m.weight.std()) == pytest.approx(0.02, rel=0.05)
    assert float(head.last_layer.direction.std()) == pytest.approx(0.02, rel=0.05)


def test_mlp_head_options() -> None:
    torch.manual_seed(0)
    head = MLPHead(64, 1024, hidden_dim=256, bottleneck_dim=64, batch_norm=True, init="fan_in", last_bias=False,
                   prototype_init="fan_in")
    assert [type(m).__name__ for m in head.mlp] == ["Linear", "BatchNorm1d", "GELU", "Linear", "BatchNorm1d", "GELU", "Linear"]
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert linears[-1].bias is None and all(m.bias is not None for m in linears[:-1])
    for m in linears:
        assert float(m.weight.std()) == pytest.approx(m.in_features ** -0.5, rel=0.1)
    assert float(head.last_layer.direction.std()) == pytest.approx(64 ** -0.5, rel=0.05)
    # What the options are for: the bottleneck reaching the L2 normalisation keeps its scale.
    x = torch.randn(50, 64)
    narrow = MLPHead(64, 1024, hidden_dim=256, bottleneck_dim=64)
    assert float(head.mlp(x).norm(dim=1).mean()) > 20 * float(narrow.mlp(x).norm(dim=1).mean())
    with pytest.raises(ValueError, match="unknown initialisation"):
        MLPHead(8, 8, init="xavier")
