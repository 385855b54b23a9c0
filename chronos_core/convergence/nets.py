"""Small models for the convergence runs: MLPs, CNNs, RNNs (GRU/LSTM) and Transformers.

Each model reads its task's inputs through one adapter: vectors are viewed as (length, features),
token ids go through an embedding, so every architecture runs on every task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from chronos_core.convergence.tasks import TaskData
from chronos_core.errors import unknown_choice

EMBED_DIM = 16


@dataclass(frozen=True)
class NetSpec:
    """One architecture of the sweep: family, and the few sizes that define it."""

    name: str
    family: str  # MLP, CNN, RNN, Transformer
    width: int
    depth: int


NETS = {
    s.name: s
    for s in [
        NetSpec("mlp_s", "MLP", 64, 1),
        NetSpec("mlp_d", "MLP", 128, 3),
        NetSpec("cnn_s", "CNN", 24, 2),
        NetSpec("cnn_bn", "CNN", 32, 3),
        NetSpec("gru", "RNN", 32, 1),
        NetSpec("lstm", "RNN", 48, 1),
        NetSpec("tfm_s", "Transformer", 24, 1),
        NetSpec("tfm_d", "Transformer", 32, 2),
    ]
}


class _Inputs(nn.Module):
    """(batch, L*F) floats -> (batch, L, F); (batch, L) token ids -> (batch, L, EMBED_DIM)."""

    def __init__(self, task: TaskData) -> None:
        super().__init__()
        self.kind, self.seq_len = task.kind, task.seq_len
        self.features = task.features if task.kind == "vector" else EMBED_DIM
        self.embed = nn.Embedding(task.features, EMBED_DIM) if task.kind == "tokens" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            return self.embed(x)
        return x.view(x.shape[0], self.seq_len, self.features)


class MLP(nn.Module):
    def __init__(self, task: TaskData, width: int, depth: int) -> None:
        super().__init__()
        self.inputs = _Inputs(task)
        layers: list[nn.Module] = []
        dim = task.seq_len * self.inputs.features
        for _ in range(depth):
            layers += [nn.Linear(dim, width), nn.ReLU()]
            dim = width
        self.body = nn.Sequential(*layers, nn.Linear(dim, task.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.inputs(x).flatten(1))


class CNN(nn.Module):
    def __init__(self, task: TaskData, width: int, depth: int, batch_norm: bool) -> None:
        super().__init__()
        self.inputs = _Inputs(task)
        layers: list[nn.Module] = []
        channels = self.inputs.features
        for _ in range(depth):
            layers.append(nn.Conv1d(channels, width, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            channels = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, task.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.inputs(x).transpose(1, 2))
        return self.head(h.mean(dim=2))


class RNN(nn.Module):
    def __init__(self, task: TaskData, width: int, cell: str) -> None:
        super().__init__()
        self.inputs = _Inputs(task)
        rnn_cls = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(self.inputs.features, width, batch_first=True)
        self.head = nn.Linear(width, task.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.inputs(x))
        return self.head(out[:, -1])


class Block(nn.Module):
    """Pre-norm Transformer encoder block (lean: one fused qkv projection, SDPA attention)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, length, width)
        x = x + self.out(att)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, task: TaskData, width: int, depth: int) -> None:
        super().__init__()
        self.inputs = _Inputs(task)
        self.proj = nn.Linear(self.inputs.features, width)
        self.pos = nn.Parameter(torch.randn(1, task.seq_len, width) * 0.02)
        self.blocks = nn.Sequential(*[Block(width, heads=4 if width % 4 == 0 else 2) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, task.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.proj(self.inputs(x)) + self.pos)
        return self.head(self.norm(h.mean(dim=1)))


def build_model(name: str, task: TaskData) -> nn.Module:
    """A freshly initialized model `name` (see NETS) for `task` (seed torch before calling)."""
    if name not in NETS:
        raise unknown_choice("convergence model", name, NETS)
    spec = NETS[name]
    if spec.family == "MLP":
        return MLP(task, spec.width, spec.depth)
    if spec.family == "CNN":
        return CNN(task, spec.width, spec.depth, batch_norm=name.endswith("_bn"))
    if spec.family == "RNN":
        return RNN(task, spec.width, cell=name)
    return Transformer(task, spec.width, spec.depth)


def param_count(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
