"""ConViTac in pure PyTorch: config, encoders, contrastive encoder + NT-Xent, CEC fusion, heads."""

from convitac_ros.model.config import ModelConfig
from convitac_ros.model.contrastive import ContrastiveEncoder, nt_xent_loss
from convitac_ros.model.convitac import AttentionMaps, ConViTac
from convitac_ros.model.dino import load_dino_weights

__all__ = [
    'AttentionMaps', 'ConViTac', 'ContrastiveEncoder', 'ModelConfig', 'load_dino_weights',
    'nt_xent_loss',
]
