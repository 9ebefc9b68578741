"""Grade queries over a program's clip features: the parts GDLT and CoFInAl share.

GDLT (Xu et al., "Likert Scoring with Grade Decoupling for Long-term Action Assessment", CVPR
2022, ``xuangch/CVPR22_GDLT``) and CoFInAl (Zhou et al., IJCAI 2024, ``ZhouKanglei/CoFInAl_AQA``)
read a program as T clip features (B, T, D) and score it with N learned *grade queries*:

    features (B, T, D) --feature_projection--> (B, T, H)     two 1x1 convolutions with BatchNorm
        --encoder (self-attention over clips)--> memory (B, T, H)
    queries (N, H) --decoder (self-attention over the queries, cross-attention to the clips)-->
        (B, N, H)

Each decoded query i gives one logit s_i (its own row of a linear layer: the diagonal of
``Linear(H, N)`` applied to every query); :func:`grade_mix` turns the logits into weights
w_i = sigmoid(s_i) / sum_j sigmoid(s_j) and the score sum_i w_i g_i over the grade values g
(GDLT: 0, 1/3, 2/3, 1). A hardest-triplet loss on the cosine distances of the decoded queries
(:func:`hardest_triplet_loss`) keeps the grades apart.

The transformer is a post-norm encoder/decoder (ReLU feed-forward of 3H, dropout on attention
weights and residuals, a final LayerNorm after each stack), laid out with the module names of
``torch.nn.Transformer``, so an official state dict loads key for key. The decoder's last
cross-attention (averaged over heads) is returned: which clips each grade query looked at.

Padding: a training window shorter than the program is zero-padded (``length`` real rows), and
an evaluation batch of programs of different lengths is padded to the longest. Padded rows are
left out of the attention keys and of the projection's BatchNorm statistics, so a program scores
the same alone or in a batch. ``attend_padding=True`` feeds them to the model like real rows, as
the official code does with its zero-padded training windows (its test batch is one program,
never padded).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def feature_projection(in_dim: int, hidden: int) -> nn.Sequential:
    """(B, D, T) -> (B, H, T): Conv1d(D, D/2, 1), BatchNorm, ReLU, Conv1d(D/2, H, 1), BatchNorm."""
    return nn.Sequential(nn.Conv1d(in_dim, in_dim // 2, kernel_size=1), nn.BatchNorm1d(in_dim // 2),
                         nn.ReLU(), nn.Conv1d(in_dim // 2, hidden, kernel_size=1),
                         nn.BatchNorm1d(hidden))


def valid_rows(length: torch.Tensor | None, t: int) -> torch.Tensor | None:
    """(B, T) True where a row is real, from ``length`` (B,); None when every row is real."""
    if length is None:
        return None
    valid = torch.arange(t, device=length.device)[None, :] < length.reshape(-1, 1)  # (B, T)
    return None if bool(valid.all()) else valid


def project(proj: nn.Sequential, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(B, T, D) -> (B, T, H). With ``valid`` in training, only the real rows go through (so
    BatchNorm's batch statistics are theirs); padded rows come out as zeros."""
    if valid is None or not proj.training:
        return proj(x.transpose(1, 2)).transpose(1, 2)  # (B, T, H)
    rows = proj(x[valid].unsqueeze(-1)).squeeze(-1)  # (N real rows, H)
    out = rows.new_zeros(x.shape[0], x.shape[1], rows.shape[-1])  # (B, T, H)
    out[valid] = rows
    return out


class EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.dropout = nn.Dropout(dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        a = self.self_attn(x, x, x, key_padding_mask=pad)[0]  # (B, T, H)
        x = self.norm1(x + self.dropout1(a))
        f = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(f))


class DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.dropout = nn.Dropout(dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout), nn.Dropout(dropout),
                                                       nn.Dropout(dropout))

    def forward(self, q: torch.Tensor, memory: torch.Tensor,
                pad: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, H), (B, T, H) -> (B, N, H) and the cross-attention (B, N, T), heads averaged."""
        a = self.self_attn(q, q, q)[0]
        q = self.norm1(q + self.dropout1(a))
        a, attention = self.multihead_attn(q, memory, memory, key_padding_mask=pad)
        q = self.norm2(q + self.dropout2(a))
        f = self.linear2(self.dropout(F.relu(self.linear1(q))))
        return self.norm3(q + self.dropout3(f)), attention


class Stack(nn.Module):
    """``layers`` then a final LayerNorm (``torch.nn.TransformerEncoder/Decoder``'s names)."""

    def __init__(self, layers: list[nn.Module], d: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d)


class GradeTransformer(nn.Module):
    """The encoder over clips and the decoder of grade queries (``transformer.encoder/decoder``)."""

    def __init__(self, d: int, heads: int, n_encoder: int, n_decoder: int, dropout: float):
        super().__init__()
        ff = 3 * d
        self.encoder = Stack([EncoderLayer(d, heads, ff, dropout) for _ in range(n_encoder)], d)
        self.decoder = Stack([DecoderLayer(d, heads, ff, dropout) for _ in range(n_decoder)], d)
        for p in self.parameters():  # as the official Transformer initialises its matrices
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor, queries: torch.Tensor,
                valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, H), queries (B, N, H) -> decoded queries (B, N, H), last cross-attention
        (B, N, T)."""
        pad = None if valid is None else ~valid  # True = not attended
        for layer in self.encoder.layers:
            x = layer(x, pad)
        memory = self.encoder.norm(x)  # (B, T, H)
        q, attention = queries, None
        for layer in self.decoder.layers:
            q, attention = layer(q, memory, pad)
        return self.decoder.norm(q), attention


def diagonal_logits(regressor: nn.Linear, decoded: torch.Tensor) -> torch.Tensor:
    """(B, N, H) -> (B, N): query i through row i of ``regressor`` (the diagonal of its output)."""
    return torch.diagonal(regressor(decoded), dim1=-2, dim2=-1)


def grade_mix(logits: torch.Tensor, grades: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, N) and grade values (N,) -> (score (B,), weights (B, N)): the weights are the
    sigmoids normalised to sum to one, the score their mix of the grade values."""
    w = torch.sigmoid(logits)
    w = w / torch.sum(w, dim=1, keepdim=True)  # (B, N)
    return torch.sum(grades.unsqueeze(0).repeat(w.shape[0], 1) * w, dim=1), w


def hardest_triplet_loss(x: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hardest triplet loss on cosine distances: for each row of ``x`` (M, C), the farthest
    row of its label and the nearest row of another label; mean of relu(d+ - d- + margin). A row
    without a same-label partner has d+ = 0 (the official rule)."""
    unit = F.normalize(x, dim=-1)
    dist = 1 - torch.mm(unit, unit.T)  # (M, M)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=x.device)
    hardest_pos = torch.max(dist * (same & not_self).float(), dim=1, keepdim=True)[0]
    farthest = torch.max(dist, dim=1, keepdim=True)[0]
    hardest_neg = torch.min(dist + farthest * (1.0 - (~same).float()), dim=1, keepdim=True)[0]
    return torch.mean(F.relu(hardest_pos - hardest_neg + margin))


def clip_contributions(attention: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """Spread each grade's share of the score over the clips its query attended to: attention
    (N, T) rows summing to one, ``parts`` (N,) -> (T,) summing to ``parts.sum()``."""
    return (parts.unsqueeze(1) * attention).sum(0)
