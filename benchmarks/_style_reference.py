"""The reference that ``style-speed`` times genlab's ``stylize`` against: neural style transfer
written the way the PyTorch neural-style tutorial builds it (written out here from its
structure, not copied), so that it runs in the same process, on the same machine, with the same
backbone weights, layers and images.

The tutorial's structure:

- a ``Normalization`` module (ImageNet mean and std) first, then the layers of a torchvision
  VGG's ``features`` copied one by one into a new ``nn.Sequential``, named ``conv_i``,
  ``relu_i``, ``pool_i`` (``i`` counts the convs), every ReLU replaced by an out-of-place one;
- a ``ContentLoss`` / ``StyleLoss`` module inserted right after each chosen layer: a
  transparent module that stores ``mse_loss`` of its input (or of its input's Gram matrix)
  against a target computed once from the content (or style) image running through the model
  built so far;
- the model cut after the last loss module (nothing deeper runs);
- ``gram = F F^T / (a b c d)`` for activations of shape (a, b, c, d);
- ``torch.optim.LBFGS([input])`` with a closure that clamps the input to [0, 1] in place,
  runs the model, sums ``style_weight * sum(style losses) + content_weight * sum(content
  losses)`` and calls ``backward``.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# genlab's ``lectures`` preset in the tutorial's naming (i counts VGG16's 13 convs):
# block2_conv2 = relu after conv2_2 = relu_4; block{1..5}_conv{2,2,3,3,3} = relu_{2,4,7,10,13}
LECTURES_CONTENT = ("relu_4",)
LECTURES_STYLE = ("relu_2", "relu_4", "relu_7", "relu_10", "relu_13")


class Normalization(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def forward(self, img):
        return (img - self.mean) / self.std


def gram_matrix(x):
    a, b, c, d = x.size()
    feats = x.view(a * b, c * d)
    return torch.mm(feats, feats.t()).div(a * b * c * d)


class ContentLoss(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target = target.detach()
        self.loss = torch.zeros(())

    def forward(self, x):
        self.loss = F.mse_loss(x, self.target)
        return x


class StyleLoss(nn.Module):
    def __init__(self, target_feature):
        super().__init__()
        self.target = gram_matrix(target_feature).detach()
        self.loss = torch.zeros(())

    def forward(self, x):
        self.loss = F.mse_loss(gram_matrix(x), self.target)
        return x


def build_style_model(cnn_features: nn.Module, style_img, content_img, content_layers=LECTURES_CONTENT,
                      style_layers=LECTURES_STYLE, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """The tutorial's ``get_style_model_and_losses``: (model, style_losses, content_losses)."""
    model = nn.Sequential(Normalization(mean, std))
    content_losses, style_losses = [], []
    i = 0
    for layer in cnn_features.children():
        if isinstance(layer, nn.Conv2d):
            i += 1
            name = f"conv_{i}"
        elif isinstance(layer, nn.ReLU):
            name = f"relu_{i}"
            layer = nn.ReLU(inplace=False)  # an in-place ReLU would overwrite what the loss modules saw
        elif isinstance(layer, nn.MaxPool2d):
            name = f"pool_{i}"
        elif isinstance(layer, nn.BatchNorm2d):
            name = f"bn_{i}"
        else:
            raise RuntimeError(f"unrecognized layer: {layer.__class__.__name__}")
        model.add_module(name, layer)
        if name in content_layers:
            target = model(content_img).detach()
            loss = ContentLoss(target)
            model.add_module(f"content_loss_{i}", loss)
            content_losses.append(loss)
        if name in style_layers:
            target_feature = model(style_img).detach()
            loss = StyleLoss(target_feature)
            model.add_module(f"style_loss_{i}", loss)
            style_losses.append(loss)
    for j in range(len(model) - 1, -1, -1):
        if isinstance(model[j], (ContentLoss, StyleLoss)):
            break
    model = model[: j + 1]
    return model, style_losses, content_losses


def run_style_transfer(cnn_features: nn.Module, content_img, style_img, input_img, num_steps: int,
                       style_weight: float = 1e6, content_weight: float = 1.0,
                       content_layers=LECTURES_CONTENT, style_layers=LECTURES_STYLE):
    """The tutorial's ``run_style_transfer`` for ``num_steps`` loss evaluations (L-BFGS with
    torch's defaults: lr 1, up to 20 iterations per ``step`` call, no line search, so one
    iteration is one closure call). The tutorial loops ``while run <= num_steps`` and lets the
    last ``step`` call run its 20 iterations; here the last call is capped so that exactly
    ``num_steps`` evaluations run. Returns (image, stats): ``seconds`` (wall time at the end of
    each evaluation, from the first one's start), ``losses`` (the total at each evaluation),
    ``setup_s`` (building the model and its targets)."""
    t_setup = time.perf_counter()
    model, style_losses, content_losses = build_style_model(cnn_features, style_img, content_img,
                                                            content_layers, style_layers)
    input_img = input_img.clone()
    input_img.requires_grad_(True)
    model.eval()
    model.requires_grad_(False)
    optimizer = torch.optim.LBFGS([input_img])
    setup_s = time.perf_counter() - t_setup
    stamps, losses = [], []
    run = [0]
    t0 = time.perf_counter()

    def closure():
        with torch.no_grad():
            input_img.clamp_(0, 1)
        optimizer.zero_grad()
        model(input_img)
        style_score = sum(sl.loss for sl in style_losses) * style_weight
        content_score = sum(cl.loss for cl in content_losses) * content_weight
        loss = style_score + content_score
        loss.backward()
        run[0] += 1
        losses.append(float(loss.detach()))
        stamps.append(time.perf_counter() - t0)
        return style_score + content_score

    while run[0] < num_steps:
        optimizer.param_groups[0]["max_iter"] = min(20, num_steps - run[0])
        optimizer.step(closure)
    with torch.no_grad():
        input_img.clamp_(0, 1)
    return input_img.detach(), {"seconds": stamps, "losses": losses, "setup_s": setup_s}
