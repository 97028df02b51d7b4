"""Image backbones that turn frames into a small grid of d-wide tokens.

Both E^c and the two fusion encoders use the same path: a timm backbone (never with pretrained
weights from a hub), its spatial feature map, an adaptive average pool to a k x k grid, and a
linear projection to the fusion width d.
"""

from __future__ import annotations

import math

import numpy as np
import timm
from timm.models.resnet import BasicBlock, ResNet
import torch
from torch import nn
from torch.nn import functional as F

from convitac_ros.model.config import BackboneKwargs, SMALL_RESNET


def create_backbone(arch: str, kwargs: BackboneKwargs, image_size: int) -> nn.Module:
    """Create a randomly initialised timm backbone without classifier.

    Models with a fixed input size (ViTs) get `img_size=image_size` so that their position
    embedding matches the frames; convolutional ones take any size.
    """
    options = dict(kwargs)
    if arch == SMALL_RESNET:
        return small_resnet(**options)
    pretrained_cfg = timm.models.get_pretrained_cfg(arch)
    if pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        options.setdefault('img_size', image_size)
    return timm.create_model(arch, pretrained=False, num_classes=0, **options)


def small_resnet(width: int = 32, blocks: int = 1, **options: float) -> nn.Module:
    """Build a randomly initialised ResNet of BasicBlocks (timm's ResNet class, no hub).

    ``blocks`` per stage; ``width``, 2, 4 and 8 x ``width`` channels in the four stages;
    ``options``: drop_rate, drop_path_rate. ``ModelConfig`` has checked the numbers
    (``SMALL_RESNET_LIMITS``).
    """
    return ResNet(block=BasicBlock, layers=(blocks,) * 4,
                  channels=tuple(width * 2 ** stage for stage in range(4)), num_classes=0,
                  **options)


def backbone_width(backbone: nn.Module) -> int:
    """Return the channels of the backbone's `forward_features` output."""
    return int(backbone.num_features)


def spatial_feature_map(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Return the spatial features of a batch of images as a channels-first map.

    Args:
        backbone: a timm model (CNN giving (N, C, h, w) or ViT giving (N, prefix + h*w, C)).
        images: `(N, 3, S, S)`.

    Returns:
        `(N, C, h, w)`.
    """
    features = backbone.forward_features(images)
    if features.ndim == 4:
        return features  # (N, C, h, w)
    tokens = features[:, getattr(backbone, 'num_prefix_tokens', 0):]  # (N, h*w, C)
    height, width = backbone.patch_embed.dynamic_feat_size(images.shape[-2:])
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def adaptive_pool_matrix(size: tuple[int, int], grid: int) -> torch.Tensor:
    """Return the matrix of `F.adaptive_avg_pool2d(x, grid)` on an `(h, w)` map.

    Cell i of an axis of length n averages positions floor(i*n/k) to ceil((i+1)*n/k) - 1, as
    PyTorch does.

    Returns:
        `(k*k, h*w)` float32: `x.flatten(2) @ matrix.T` equals the pooled map, flattened.
    """
    def axis(length: int) -> np.ndarray:
        weights = np.zeros((grid, length), dtype=np.float32)
        for cell in range(grid):
            start, end = cell * length // grid, -(-(cell + 1) * length // grid)
            weights[cell, start:end] = 1.0 / (end - start)
        return weights

    # Built in numpy so that an ONNX export records it as one constant.
    return torch.from_numpy(np.kron(axis(size[0]), axis(size[1])))


class GridTokenizer(nn.Module):
    """Backbone -> k x k pooled grid -> linear projection to d: `(N, 3, S, S) -> (N, k*k, d)`."""

    def __init__(self, arch: str, kwargs: BackboneKwargs, image_size: int, grid: int,
                 dim: int) -> None:
        super().__init__()
        self.backbone = backbone = create_backbone(arch, kwargs, image_size)
        self.grid = grid
        self.proj = nn.Linear(backbone_width(backbone), dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Args: images `(N, 3, S, S)`. Returns: tokens `(N, grid*grid, d)`, row-major."""
        feature_map = spatial_feature_map(self.backbone, images)  # (N, C, h, w)
        if torch.onnx.is_in_onnx_export():
            # ONNX has no adaptive pooling for sizes that do not divide (7 -> 4 for ResNet-18 at
            # 224 px): the same averages as one constant matrix product.
            pooling = adaptive_pool_matrix(tuple(int(n) for n in feature_map.shape[-2:]),
                                           self.grid).to(feature_map.dtype)
            pooled = feature_map.flatten(2) @ pooling.T  # (N, C, k*k)
        else:
            pooled = F.adaptive_avg_pool2d(feature_map, self.grid).flatten(2)  # (N, C, k*k)
        return self.proj(pooled.transpose(1, 2))  # (N, k*k, d)


class FusionEncoder(nn.Module):
    """A trainable frame-sequence encoder (visual or tactile) producing feature tokens.

    Every frame becomes `grid^2` tokens; learned spatial, time and stream (modality / sensor)
    embeddings are added so the CEC attention knows where and when each token comes from.
    """

    def __init__(self, arch: str, kwargs: BackboneKwargs, image_size: int, grid: int, dim: int,
                 seq_len: int, num_streams: int) -> None:
        super().__init__()
        self.tokenizer = GridTokenizer(arch, kwargs, image_size, grid, dim)
        self.seq_len = seq_len
        self.num_streams = num_streams
        self.pos_embed = nn.Parameter(torch.zeros(grid * grid, dim))
        self.time_embed = nn.Parameter(torch.zeros(seq_len, dim))
        self.stream_embed = nn.Parameter(torch.zeros(num_streams, dim))
        for parameter in (self.pos_embed, self.time_embed, self.stream_embed):
            nn.init.trunc_normal_(parameter, std=0.02)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Encode stream-major frame sequences.

        Args:
            frames: `(B, streams*T, 3, S, S)`: stream 0 frames 0..T-1, then stream 1, ...

        Returns:
            tokens `(B, streams, T, k*k, d)`.
        """
        batch = frames.shape[0]
        tokens = self.tokenizer(frames.flatten(0, 1))  # (B*streams*T, k*k, d)
        tokens = tokens.reshape(batch, self.num_streams, self.seq_len, *tokens.shape[1:])
        return (tokens + self.pos_embed + self.time_embed[:, None]
                + self.stream_embed[:, None, None])


def _reflected_blur(sigma: float, radius: int, size: int) -> np.ndarray:
    """The `(size, size)` matrix of a 1-D Gaussian blur with reflected borders (no edge repeat)."""
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights = (weights / weights.sum()).astype(np.float32)
    blur = np.zeros((size, size), dtype=np.float32)
    last = size - 1
    for row in range(size):
        columns = np.abs(row + offsets)
        columns = np.where(columns > last, 2 * last - columns, columns)
        np.add.at(blur[row], columns, weights)
    return blur


class TactileHighPass(nn.Module):
    """Subtract a Gaussian blur from gel frames (``ModelConfig.tactile_highpass``).

    A gel image is dominated by the sensor's own illumination (a DIGIT's three coloured LEDs, a
    GelSight's gradient), the same in every frame; the contact shows as fine relief on top.
    The high-pass keeps the relief and removes the smooth pattern of any sensor, with no
    reference frame and no learned weights (the blur is a non-persistent buffer: checkpoints
    hold only the config's sigma). The separable blur with reflected borders is one S x S
    matrix B applied to both axes, ``x - B x B^T``: two small matrix products (a depthwise
    convolution with a long kernel cost ten times more on a CPU), ordinary MatMul operators in
    an ONNX export. Identity when the sigma is 0.
    """

    def __init__(self, fraction: float, image_size: int) -> None:
        super().__init__()
        self.sigma = float(fraction) * image_size
        # Three sigmas, at most what reflect padding allows (less than the side); 0: identity.
        self.radius = 0 if self.sigma <= 0 else max(
            1, min(int(math.ceil(3 * self.sigma)), image_size - 1))
        if self.radius == 0:
            blur = torch.empty(0)  # identity: no matrix
        elif torch.empty(0).device.type == 'meta':
            # Built on the meta device (the checkpoint check's shapes-only model): shapes only,
            # nothing allocated, whatever size a file's metadata declares.
            blur = torch.empty(image_size, image_size)
        else:
            blur = torch.from_numpy(_reflected_blur(self.sigma, self.radius, image_size))
        self.register_buffer('blur', blur, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Args: frames `(..., C, S, S)`. Returns: the same shape, high-passed."""
        if self.radius == 0:
            return frames
        blur = self.blur.to(frames.dtype)
        return frames - blur @ frames @ blur.T
