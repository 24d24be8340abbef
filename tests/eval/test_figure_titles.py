"""Figure panels say what they show: the paper's model labels and the run, not timm architecture names."""

from __future__ import annotations

from mokd.eval.attention_distance import panel_title


def test_one_model_panel_is_its_label() -> None:
    assert panel_title("ViT-S", ["ViT-S (MOKD R50–ViT-S)"]) == "ViT-S (MOKD R50–ViT-S)"


def test_shared_panel_names_the_model_once_and_each_run() -> None:
    members = ["ViT-S (DINO)", "ViT-S (MOKD R50–ViT-S)"]
    assert panel_title("ViT-S", members) == "ViT-S: DINO vs MOKD R50–ViT-S"


def test_other_labels_are_joined() -> None:
    assert panel_title("vit_small_patch16_224", ["run_a:vit_s", "run_b:vit_s"]) == "run_a:vit_s vs run_b:vit_s"
