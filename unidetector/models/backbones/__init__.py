"""Backbones (registered in ``unidetector.registry.MODELS``)."""
from .clip_resnet import CLIPBottleneck, CLIPResNet, make_clip_res_layer
from .resnet import ResNet

__all__ = ["CLIPBottleneck", "CLIPResNet", "make_clip_res_layer", "ResNet"]
