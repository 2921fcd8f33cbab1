"""Supervised contrastive loss (SupCon; Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020).

For L2-normalised embeddings ``z`` and temperature ``tau``, with ``A(i)`` every other sample in the batch and ``P(i)``
the other samples with the label of ``i``, the loss (the paper's ``L_out``, eq. 2) is::

    L = mean over anchors i with |P(i)| > 0 of   -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / tau)
                                                                                / sum_{a in A(i)} exp(z_i.z_a / tau) )

Anchors without any positive in the batch are left out of the mean (a class-balanced sampler makes them rare). The
reference implementation's extra ``tau / base_tau`` factor is 1 with its defaults and is omitted here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
                normalize: bool = True) -> torch.Tensor:
    """SupCon loss of a batch.

    Args:
        embeddings: ``B x D`` (one view per sample) or ``B x V x D`` (``V`` views of each sample; the views share the
            sample's label and are positives of each other).
        labels: ``B`` integer class ids.
        temperature: ``tau``; smaller sharpens the softmax (the paper uses 0.1 with large batches).
        normalize: L2-normalise the embeddings first (set False if they already are).

    Returns a scalar tensor; 0 (still attached to the graph) when no anchor has a positive.
    """
    if embeddings.dim() == 3:
        b, v, d = embeddings.shape
        embeddings = embeddings.reshape(b * v, d)
        labels = labels.repeat_interleave(v)
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be B x D or B x V x D, got shape {tuple(embeddings.shape)}")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError("labels and embeddings disagree on the batch size")
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    z = F.normalize(embeddings.float(), dim=1) if normalize else embeddings.float()
    n = z.shape[0]
    with torch.autocast(z.device.type, enabled=False):  # full precision even inside a mixed-precision step
        logits = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # a sample is never in its own denominator
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    labels = labels.to(z.device)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return embeddings.sum() * 0.0
    # -inf on the diagonal never meets a positive; zero it so 0 * -inf does not produce nan
    pos_log_prob = log_prob.masked_fill(~pos, 0.0).sum(1)
    per_anchor = -pos_log_prob[has_pos] / n_pos[has_pos]
    return per_anchor.mean()


class SupConLoss(nn.Module):
    """Module form of :func:`supcon_loss`."""

    def __init__(self, temperature: float = 0.1, normalize: bool = True) -> None:
        super().__init__()
        self.temperature = temperature
        self.normalize = normalize

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return supcon_loss(embeddings, labels, self.temperature, self.normalize)


class ProjectionHead(nn.Module):
    """The SupCon projection MLP (``embed_dim -> hidden -> out_dim``) whose output the contrastive loss sees; the
    classifier (or linear probe) uses the embedding before it, as in the paper."""

    def __init__(self, in_dim: int, out_dim: int = 128, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = hidden_dim or in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
