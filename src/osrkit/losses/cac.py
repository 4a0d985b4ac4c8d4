"""CAC: Class Anchor Clustering loss (Miller et al., WACV 2021), as in the authors' code.

Fixed anchors c_k = alpha * e_k in logit space; Euclidean distances d_k = ||z - c_k||_2;
loss = lbda * mean(d_y) + mean(log(1 + sum_{k != y} exp(d_y - d_k))).
"""

from __future__ import annotations

import torch
from torch import nn


class CACLoss(nn.Module):
    """`loss_fn(logits, labels)` → scalar; `distances(logits)` → (N, K); terms in `last_terms`.

    `anchors` is a buffer: alpha*I at training time, replaced by per-class mean logits of correctly
    classified training samples after training (`recentre`), and saved with the checkpoint.
    """

    def __init__(self, num_classes: int, alpha: float = 10.0, lbda: float = 0.1) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"CAC needs at least 2 classes, got {num_classes}")
        self.num_classes, self.alpha, self.lbda = num_classes, float(alpha), float(lbda)
        self.register_buffer("anchors", self.alpha * torch.eye(num_classes))
        self.last_terms: dict[str, torch.Tensor] = {}

    def distances(self, logits: torch.Tensor, anchors: torch.Tensor | None = None) -> torch.Tensor:
        """Euclidean (not squared) distances from each logit vector to each anchor, (N, K)."""
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be (N, {self.num_classes}), got {tuple(logits.shape)}")
        a = self.anchors if anchors is None else anchors
        diff = logits.unsqueeze(1) - a.to(logits.dtype).unsqueeze(0)
        return diff.pow(2).sum(-1).sqrt()

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The anchor term, the tuplet term and their weighted sum (at the fixed training anchors)."""
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"labels must be ({logits.shape[0]},), got {tuple(labels.shape)}")
        d = self.distances(logits)
        d_true = d.gather(1, labels.view(-1, 1))
        others = torch.ones_like(d, dtype=torch.bool).scatter_(1, labels.view(-1, 1), False)
        gaps = (d_true - d)[others].view(d.shape[0], self.num_classes - 1)
        # log(1 + sum exp(gaps)) = logsumexp([0, gaps]), stable for large gaps
        tuplet = torch.logsumexp(torch.cat([torch.zeros_like(d_true), gaps], dim=1), dim=1).mean()
        anchor = d_true.mean()
        return {"anchor": anchor, "tuplet": tuplet, "loss": self.lbda * anchor + tuplet}

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t = self.terms(logits, labels)
        self.last_terms = {k: v.detach() for k, v in t.items()}
        return t["loss"]


def class_means_of_correct(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean logit vector over the samples classified correctly by argmax, (K, K)."""
    correct = logits.argmax(1) == labels
    means = []
    for k in range(num_classes):
        sel = logits[correct & (labels == k)]
        if len(sel) == 0:
            raise ValueError(f"class {k} has no correctly classified training sample: cannot re-centre its anchor")
        means.append(sel.mean(0))
    return torch.stack(means)
