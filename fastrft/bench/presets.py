"""Named workloads for `fastrft bench --preset NAME`; explicit flags override a preset."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # the paper's configuration: Swin-B at 224 px, APGD-7 at 4/255, 50 epochs on an
    # Aircraft-sized set (6,667 images, 100 classes)
    "paper": {
        "model": "swin_base_patch4_window7_224",
        "img_size": 224,
        "batch_size": 128,
        "attack": "apgd",
        "steps": 7,
        "eps": 4 / 255,
        "num_classes": 100,
        "images": 6667,
        "epochs": 50,
    },
    "resnet50": {
        "model": "resnet50",
        "img_size": 224,
        "batch_size": 128,
        "attack": "apgd",
        "steps": 7,
        "num_classes": 1000,
    },
    "vit_b16": {
        "model": "vit_base_patch16_224",
        "img_size": 224,
        "batch_size": 128,
        "attack": "apgd",
        "steps": 7,
        "num_classes": 1000,
    },
    # CIFAR-scale sweeps: ResNet-18 at 32 px, batch 512
    "cifar": {
        "model": "resnet18",
        "img_size": 32,
        "batch_size": 512,
        "attack": "pgd",
        "steps": 10,
        "eps": 8 / 255,
        "num_classes": 10,
        "images": 50000,
        "epochs": 50,
    },
    # seconds on two CPU cores: what the tests run
    "tiny": {
        "model": "tiny_cnn",
        "img_size": 16,
        "batch_size": 16,
        "attack": "pgd",
        "steps": 2,
        "num_classes": 10,
    },
}

# Issue 6's targets for each preset and mode, on an H100 or H200 (see fastrft.bench.targets)
_ATTACK_TARGETS = {"speedup": 10.0, "fp32_speedup": 1.5, "acc_gap": 1.0}
TARGETS: dict[str, dict[str, dict[str, float]]] = {
    "resnet50": {"train": {"speedup": 5.0, "limit": 0.85}, "attack": _ATTACK_TARGETS},
    "vit_b16": {"train": {"speedup": 5.0, "limit": 0.85}, "attack": _ATTACK_TARGETS},
    "cifar": {"train": {"speedup": 8.0}},
    "paper": {"train": {"minutes": 10.0}},
}
