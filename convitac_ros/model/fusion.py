"""CEC fusion: condition tokens cross-attend to the visual and tactile feature tokens.

A block is pre-norm: `x = q + Attn(LN(q), LN(F))`, `x = x + MLP(LN(x))`. The queries are a
learned per-position query embedding plus the condition: for `fusion='cec'` either the gated
contrasted embedding (`GatedCondition`, the default) or the frozen E^c tokens e^p (the earlier
forms); the `cross_attention` ablation has the learned embedding alone. The feature tokens F are
the keys and values in every block.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CrossAttention(nn.Module):
    """Multi-head attention with separate query and key/value sequences.

    Uses the fused scaled-dot-product kernel unless the weights are asked for.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from queries to context.

        Args:
            queries: `(B, Q, d)`.
            context: `(B, N, d)`.
            need_weights: also return the attention weights.

        Returns:
            output `(B, Q, d)` and, if asked, the weights `(B, heads, Q, N)` (rows sum to 1).
        """
        batch, num_queries, dim = queries.shape
        head_dim = dim // self.num_heads
        q = self.to_q(queries).reshape(batch, num_queries, self.num_heads, head_dim)
        k, v = self.to_kv(context).reshape(batch, -1, 2, self.num_heads, head_dim).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, h, Q|N, head_dim)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            weights = torch.softmax(q @ k.transpose(-2, -1) * head_dim ** -0.5, dim=-1)
            attended = F.dropout(weights, dropout, self.training) @ v
        else:
            attended = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        attended = attended.transpose(1, 2).reshape(batch, num_queries, dim)
        return self.out(attended), weights


class CECBlock(nn.Module):
    """One contrastive-embedding-conditioned cross-attention block (residual, LayerNorm, MLP)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, num_heads, dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, queries: torch.Tensor, context: torch.Tensor, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Args: queries `(B, Q, d)`, context `(B, N, d)`. Returns: `(B, Q, d)`, weights."""
        attended, weights = self.attn(self.norm_q(queries), self.norm_kv(context), need_weights)
        x = queries + attended
        return x + self.mlp(self.norm_mlp(x)), weights


class GatedCondition(nn.Module):
    """The contrasted embeddings as query offsets, through a zero-initialised gate.

    Each stream's embedding (L2-normalised, as NT-Xent sees it) is projected to d and scaled per
    channel by `gate`, which starts at zero: at initialisation the offsets are zero and CEC is
    exactly the cross-attention baseline; training can only add the condition where it helps.
    """

    def __init__(self, embed_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embed_dim, dim)
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(self, embeddings: torch.Tensor, queries_per_stream: int) -> torch.Tensor:
        """Args: embeddings `(B, n, D)` per stream. Returns: offsets `(B, n*queries, d)`."""
        offsets = self.gate * self.proj(F.normalize(embeddings, dim=-1))  # (B, n, d)
        return offsets.repeat_interleave(queries_per_stream, dim=1)


class CECFusion(nn.Module):
    """L CEC blocks, then a final LayerNorm and the mean over the query tokens."""

    def __init__(self, dim: int, num_blocks: int, num_heads: int, mlp_ratio: float,
                 dropout: float, num_queries: int) -> None:
        super().__init__()
        self.query_embed = nn.Parameter(torch.zeros(num_queries, dim))
        nn.init.trunc_normal_(self.query_embed, std=0.02)
        self.blocks = nn.ModuleList(
            CECBlock(dim, num_heads, mlp_ratio, dropout) for _ in range(num_blocks))
        self.norm = nn.LayerNorm(dim)

    def forward(self, condition: torch.Tensor | None, features: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fuse the feature tokens under the condition.

        Args:
            condition: `(B, Q, d)` contrastive embeddings, or None for learned queries only.
            features: `(B, N, d)` feature tokens F.
            need_weights: also return the attention over F.

        Returns:
            pooled `(B, d)` and, if asked, the attention `(B, Q, N)` averaged over heads and
            blocks.
        """
        queries = self.query_embed.expand(features.shape[0], -1, -1)  # (B, Q, d)
        if condition is not None:
            queries = condition + queries
        attention = []
        for block in self.blocks:
            queries, weights = block(queries, features, need_weights)
            if weights is not None:
                attention.append(weights.mean(dim=1))  # (B, Q, N)
        pooled = self.norm(queries).mean(dim=1)  # (B, d)
        return pooled, torch.stack(attention).mean(dim=0) if attention else None


class PooledFusion(nn.Module):
    """The `concat` and `add` ablations: one pooled token per stream, no attention."""

    def __init__(self, dim: int, num_streams: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.proj = nn.Linear(num_streams * dim, dim) if mode == 'concat' else nn.Identity()
        self.norm = nn.LayerNorm(dim)

    def forward(self, stream_tokens: torch.Tensor) -> torch.Tensor:
        """Args: stream_tokens `(B, streams, d)`. Returns: `(B, d)`."""
        if self.mode == 'concat':
            return self.norm(self.proj(stream_tokens.flatten(1)))
        return self.norm(stream_tokens.sum(dim=1))
