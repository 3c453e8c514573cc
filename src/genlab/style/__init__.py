"""Images made by optimising the input of a frozen network.

- ``optimize``: the shared loop (L-BFGS or Adam over an input tensor, loss history, clamping,
  callback), for style transfer now and feature visualisation / adversarial examples later;
- ``features``: activations of named layers in one forward pass that stops after the last one
  (Keras ``blockB_convC`` and Gatys ``convB_C`` / ``reluB_C`` names on torchvision's VGG);
- ``nst``: neural style transfer (Gatys et al. 2016): Gram-matrix style loss, content and
  total-variation losses, presets, multi-scale and colour-preserving ``stylize``.
"""
from .features import FeatureExtractor, resolve_style_layers, use_avg_pool, vgg_layer_names
from .nst import (PRESETS, combine_luminance, content_loss, gram, load_image, rgb_to_yiq, style_loss, stylize,
                  tv_loss, yiq_to_rgb)
from .optimize import OptimizeResult, optimize_input

__all__ = ["FeatureExtractor", "OptimizeResult", "PRESETS", "combine_luminance", "content_loss", "gram", "load_image",
           "optimize_input", "resolve_style_layers", "rgb_to_yiq", "stylize", "style_loss", "tv_loss",
           "use_avg_pool", "vgg_layer_names", "yiq_to_rgb"]
