"""Head warm start: a linear probe of the classifier head on frozen encoder features."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from citeops.tasks.classifier.siamese import SiameseBertForSequenceClassification
from citeops.tasks.train.batching import collate_padded, sorted_batches

if TYPE_CHECKING:
    from citeops.tasks.train.batching import EncodedPair


def fit_head(
    model: SiameseBertForSequenceClassification,
    batches: Iterable[dict[str, torch.Tensor]],
    class_weighted: bool,
    bf16: bool = False,
) -> int:
    """Linear probing before fine-tuning: fit the classifier as a logistic regression on the
    frozen encoder's features of ``batches`` (model inputs + ``labels``) and load it into
    ``model.classifier``; the encoder is untouched. Returns the number of pairs used.

    Fine-tuning then starts from a head that already separates the labels as well as the
    pretrained features allow, instead of from random weights whose first gradients also
    move the encoder (Kumar et al., 2022, "Fine-tuning can distort pretrained features").
    """
    from sklearn.linear_model import LogisticRegression

    was_training = model.training
    model.eval()
    features, labels = [], []
    device = model.device
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for batch in batches:
            inputs = [batch.get(name) for name in ("attention_mask", "token_type_ids")]
            inputs = [t.to(device) if t is not None else None for t in inputs]
            features.append(model.pair_features(batch["input_ids"].to(device), *inputs).cpu())
            labels.append(batch["labels"])
    x, y = torch.cat(features).float().numpy(), torch.cat(labels).numpy()
    model.train(was_training)
    classes = list(range(model.config.num_labels))
    if sorted(set(y.tolist())) != classes:  # a label without examples: keep the random head
        return 0
    probe = LogisticRegression(
        max_iter=2000, class_weight="balanced" if class_weighted else None
    ).fit(x, y)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(probe.coef_).to(model.classifier.weight))
        model.classifier.bias.copy_(torch.from_numpy(probe.intercept_).to(model.classifier.bias))
    return len(y)


def fit_head_on_pairs(
    model: SiameseBertForSequenceClassification,
    pairs: Sequence[EncodedPair],
    pad_token_id: int,
    batch_size: int,
    class_weighted: bool,
    bf16: bool = False,
) -> int:
    """:func:`fit_head` on tokenised training pairs, scored in length-sorted batches."""

    batches = (
        collate_padded([pairs[i] for i in rows], pad_token_id)
        for rows in sorted_batches([len(p) for p in pairs], batch_size)
    )
    return fit_head(model, batches, class_weighted, bf16)
