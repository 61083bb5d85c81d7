"""Optimiser pieces (plain torch): parameter groups with layer-wise learning-rate decay,
AdamW, and the linear warm-up then linear decay schedule."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")
_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def layer_depth(name: str, num_layers: int) -> int:
    """Depth of a parameter from the top: 0 for the head, ``i+1`` for encoder layer
    ``num_layers-1-i`` ... and ``num_layers+1`` for the embeddings."""
    match = _LAYER.search(name)
    if match:
        return num_layers - int(match.group(1))
    if "embeddings" in name:
        return num_layers + 1
    return 0


def count_layers(model: torch.nn.Module) -> int:
    indices = [int(m.group(1)) for n, _ in model.named_parameters() if (m := _LAYER.search(n))]
    return max(indices) + 1 if indices else 0


def parameter_groups(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float,
    layer_lr_decay: float,
    head_learning_rate: float | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups: rate ``lr * decay**depth`` per depth (``head_learning_rate`` for the
    head, depth 0, when given), no weight decay on biases/norms."""
    num_layers = count_layers(model)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_depth(name, num_layers)
        decays = not any(name.endswith(s) for s in _NO_DECAY)
        key = (depth, decays)
        if key not in groups:
            groups[key] = {
                "params": [],
                "lr": (
                    head_learning_rate
                    if depth == 0 and head_learning_rate
                    else learning_rate * layer_lr_decay**depth
                ),
                "weight_decay": weight_decay if decays else 0.0,
            }
        groups[key]["params"].append(param)
    return [groups[k] for k in sorted(groups)]


def warmup_linear_decay(warmup_steps: int, total_steps: int):
    """LR multiplier: 0 -> 1 over ``warmup_steps``, then linearly to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        remaining = max(total_steps - step, 0)
        return remaining / max(total_steps - warmup_steps, 1)

    return factor


def build_optimizer(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float,
    layer_lr_decay: float,
    warmup_ratio: float,
    total_steps: int,
    head_learning_rate: float | None = None,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`parameter_groups` with a per-step warm-up/decay scheduler."""
    import torch

    groups = parameter_groups(
        model, learning_rate, weight_decay, layer_lr_decay, head_learning_rate
    )
    optimizer = torch.optim.AdamW(groups, lr=learning_rate)
    warmup = int(round(warmup_ratio * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_linear_decay(warmup, max(total_steps, 1))
    )
    return optimizer, scheduler
