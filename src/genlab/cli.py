"""The ``genlab`` command. Each subcommand calls the public API and nothing more.

Bad input (an unknown model, a missing file, a malformed --set) prints one line,
``genlab: error: ...``, and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import GenlabError

EPILOG_TRAIN = """\
examples:
  genlab train vae --data digits --epochs 20
  genlab train vae --data mnist --data-root ../shared/data --epochs 10 --batch-size 128
  genlab train ae --data mnist --data-root DIR --set hidden=[1000,500,250] latent=30 loss=bce
  genlab train vae --data mnist --set data.binarize=dynamic train.grad_clip=5
  genlab train --out runs/v1 --resume --epochs 20          # continue a stopped run to 20 epochs
  genlab train classifier --backbone efficientnet_lite0 --data fashion-mnist --data-root DIR \
      --labels-per-class 100 --strategy auto --epochs 5     # transfer learning; auto picks freeze:N
  genlab train classifier --backbone resnet18 --weights resnet18.pth --data folder:photos --strategy finetune
  torchrun --nproc_per_node 2 -m genlab train vae --data mnist --data-root DIR --batch-size 256
      # 2 processes (gloo on the CPU, NCCL on GPUs); 256 is the global batch; rank 0 writes the run
  genlab train dcgan --data mnist --data-root DIR --device cuda --amp bf16 --compile

A run stopped by Ctrl-C or SIGTERM writes a checkpoint first; one killed outright resumes from its
last checkpoint with --resume and ends with the weights it would have had. --set
train.on_nan=rollback turns a NaN/Inf loss or gradient into a rollback with a lower learning rate.

--set KEY=VALUE reaches any field of the model, train or data config (`genlab list models -v`
shows the model fields); prefix with model., train. or data. when a name is ambiguous. Values
are JSON (lists as [400,200], true/false) or plain strings. --config FILE.toml may hold a
top-level `model = "vae"` or a [model] table with `name = "vae"` and the model's fields, and the
tables [train] and [data]; the command line wins over the file, except that MODEL and the file's
model name must agree.
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps prose paragraphs; keeps indented lines (examples) as written."""

    def _fill_text(self, text, width, indent):
        import textwrap

        out, para = [], []

        def flush():
            if para:
                out.append(textwrap.fill(" ".join(para), width, initial_indent=indent, subsequent_indent=indent))
                para.clear()

        for line in text.splitlines():
            if line.startswith(" ") or not line.strip() or line.endswith(":"):
                flush()
                out.append(line)
            else:
                para.append(line.strip())
        flush()
        return "\n".join(out)


class _BenchHelp(argparse.Action):
    """``genlab bench [NAME] --help``: the command's help, then NAME's protocol and settings."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from .bench import benchmark_help

        name = getattr(namespace, "name", None)
        text = None
        if name and name != "list":
            try:
                text = benchmark_help(name)
            except GenlabError as e:
                parser.exit(2, f"{parser.prog}: error: {e}\n")
        parser.print_help()
        if text:
            print("\n" + text)
        parser.exit()


def _formatter(prog):
    return _Formatter(prog, max_help_position=32)


def build_parser() -> Parser:
    p = Parser(prog="genlab", formatter_class=_formatter,
               description="genlab: autoencoders, VAEs and GANs that train, evaluate and report from one command line.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"genlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    # list
    s = sub.add_parser("list", help="list registered models or data sets", formatter_class=_formatter,
                       description="Print the registry: one line per model or data set, with a description.")
    s.add_argument("what", choices=["models", "datasets", "extractors", "backbones"], help="models, datasets, extractors or backbones")
    s.add_argument("-v", "--verbose", action="store_true", help="also list each model's config fields and defaults (backbones: their stages, as freeze:N counts them)")

    # train
    s = sub.add_parser("train", help="train a model; prints the run directory", formatter_class=_formatter,
                       description="Train MODEL on a data set and write a run directory (config.json, "
                       "model.safetensors, state.pt, metrics.jsonl, samples/, eval.json).", epilog=EPILOG_TRAIN)
    s.add_argument("model", metavar="MODEL", nargs="?",
                   help="a registered model (see `genlab list models`); optional with --resume, which reads it from the run")
    s.add_argument("--data", metavar="NAME", help="digits (default), mnist, fashion-mnist, cifar10, folder:PATH or npz:PATH")
    s.add_argument("--data-root", metavar="DIR", help="folder holding MNIST/raw etc. (default $GENLAB_DATA_ROOT or ./data)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=int, metavar="N", help="passes over the training split (default 10)")
    g.add_argument("--steps", type=int, metavar="N", help="optimizer steps instead of epochs")
    s.add_argument("--batch-size", type=int, metavar="B", help="examples per step (default 128)")
    s.add_argument("--lr", type=float, metavar="X", help="learning rate (default 1e-3)")
    s.add_argument("--seed", type=int, metavar="S", help="seed (default 0); the same seed gives the same weights on the CPU")
    s.add_argument("--device", metavar="DEV", help="auto (default), cpu, cuda, cuda:N")
    s.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/MODEL-DATA-TIME)")
    s.add_argument("--config", metavar="FILE.toml", help="config file with [model], [train], [data] tables")
    s.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="override any config field")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument("--download", action="store_true", help="allow downloading a missing torchvision data set (and, for classifier, missing ImageNet weights)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.add_argument("--amp", nargs="?", const="bf16", choices=("bf16", "fp16"), metavar="bf16|fp16",
                   help="mixed precision (train.amp): bf16 (the default of the flag) or fp16 with a gradient scaler; made for CUDA, runs on the CPU")
    s.add_argument("--compile", action="store_true", help="torch.compile the model's networks (train.compile)")
    c = s.add_argument_group("classifier (transfer learning; shortcuts for --set)")
    c.add_argument("--backbone", metavar="NAME", help="model.backbone: small-cnn, resnet18, ..., efficientnet_lite0, timm:NAME (genlab list backbones)")
    c.add_argument("--strategy", metavar="S", help="model.strategy: linear-probe, freeze:N, finetune, discriminative, gradual or auto (default)")
    c.add_argument("--weights", metavar="PATH", help="model.weights: imagenet, none, or a .pth/.safetensors state dict (default auto: imagenet where the backbone has them)")
    c.add_argument("--labels-per-class", type=int, metavar="N", help="data.labels_per_class: train on N labelled images per class")
    c.add_argument("--style", metavar="PATH", help="model.style (style-net only): the style image, e.g. genlab train style-net --style starry.jpg --data folder:photos --set image_size=256")

    # eval
    s = sub.add_parser("eval", help="evaluate a run on the test split", formatter_class=_formatter,
                       description="Evaluate RUN_DIR on the test split. Keys: mse (per pixel), sse (squared error "
                       "per image, summed over pixels), bce (per image, summed), psnr (dB), ssim (images of 11x11 pixels or more); VAEs add nelbo "
                       "(negative ELBO per image, nats), kl, and nll_iwae with --iwae-k.")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("--best", action="store_true", help="use best.safetensors, the best-scoring weights of train.quality_every, instead of the last")
    s.add_argument("--data-root", metavar="DIR", help="where the data set lives, if not where it was trained")
    s.add_argument("--split", default="test", choices=["test", "val", "train"], help="split (default test)")
    s.add_argument("--iwae-k", type=int, default=0, metavar="K", help="importance samples for the IWAE bound on -log p(x) (VAEs; e.g. 5000)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="seed for the posterior samples (default 0)")
    s.add_argument("--samples", type=int, default=10000, metavar="N",
                   help="generative runs on mnist / fashion-mnist: samples for FID, KID, IS and mode coverage "
                   "against the split, with the shipped classifier (default 10000; 0 skips them)")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    # sample
    s = sub.add_parser("sample", help="draw samples from a generative run", formatter_class=_formatter,
                       description="Draw N samples. A .png output is a grid; an .npz holds array x "
                       "(N x C x H x W, or N x D) in the data set's value range. --interpolate K draws lines "
                       "through the latent space instead (GANs and VAEs); conditional GANs (cgan, cdcgan) "
                       "draw one class with --class C or a grid of every class with --per-class K. The same "
                       "--seed gives the same z, so grids made with one seed line up.",
                       epilog="""examples:
  genlab sample runs/dcgan-mnist --n 100 --out grid.png
  genlab sample runs/dcgan-mnist --interpolate 8 --out lines.png      # 8 rows of 10 images
  genlab sample runs/cdcgan-fashion --class Sneaker --n 64 --out sneakers.png
  genlab sample runs/cdcgan-fashion --class 7 --interpolate 4 --out lines7.png
  genlab sample runs/cdcgan-mnist --per-class 10 --out classes.png  # one row per class
""")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("--best", action="store_true", help="use best.safetensors, the best-scoring weights of train.quality_every, instead of the last")
    s.add_argument("--n", type=int, default=None, metavar="N",
                   help="number of samples (default 64); not with --interpolate or --per-class, whose K sets the count")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the noise z (and of uniform labels) (default 0)")
    s.add_argument("--out", metavar="FILE", help="FILE.png or FILE.npz (default RUN_DIR/samples/samples.png)")
    s.add_argument("--interpolate", type=int, metavar="K",
                   help=f"K rows, each the model's output at {LATENT_STEPS} evenly spaced points on the straight line "
                   "between two z drawn from N(0, I) (ends included): G(z) for GANs, the decoder's mean for VAEs. "
                   f"A .png has one row per line; an .npz holds x (K*{LATENT_STEPS} outputs, row by row), z (their "
                   "latent points) and, for conditional models, y. A conditional model keeps the label fixed along "
                   "each row: class C with --class C, else row i has class i mod classes")
    s.add_argument("--class", dest="cls", metavar="C",
                   help="conditional models (cgan, cdcgan): every sample of class C, a label 0..classes-1 or a class "
                   "name of the run's data set (e.g. --class Sneaker on fashion-mnist); an .npz also holds y")
    s.add_argument("--per-class", type=int, metavar="K",
                   help="conditional models: K samples of each class, one row per class from label 0 down, column j "
                   "with the same z in every row; an .npz also holds y (the labels)")
    s.add_argument("--data-root", metavar="DIR",
                   help="where the run's data set lives, if not where it was trained (read only to look up a class name)")

    # metrics
    s = sub.add_parser("metrics", help="compare real and generated images: FID, KID, IS, PR, MMD, C2ST, modes",
                       formatter_class=_formatter,
                       description="Compare two image sources with sample-quality metrics computed on the features "
                       "of one extractor. SRC is a run directory (N samples are drawn from it), a folder of images, "
                       "an .npz with array x, or a data set with its split (mnist:test). Features of each source "
                       "are cached on disk by content hash ($GENLAB_CACHE or ~/.cache/genlab/features).",
                       epilog="""examples:
  genlab metrics --real mnist:test --fake mnist:train --metrics fid,kid --data-root ../shared/data
  genlab metrics --real mnist:test --fake runs/vae-mnist --metrics fid,kid,is,pr,modes --json
  genlab metrics --real photos/ --fake samples.npz --extractor inception-v3 --image-size 64
""")
    s.add_argument("--real", required=True, metavar="SRC", help="the reference images")
    s.add_argument("--fake", required=True, metavar="SRC", help="the images to judge")
    s.add_argument("--metrics", default="fid,kid", metavar="LIST",
                   help="comma-separated: fid, kid, is, pr (precision/recall/density/coverage), mmd, c2st, modes (default fid,kid)")
    s.add_argument("--extractor", metavar="NAME", help="feature extractor (default: mnist-cnn or fashion-cnn from the data set)")
    s.add_argument("--n", type=int, default=10000, metavar="N", help="images per source (default 10000; a seeded subset when a source has more)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="seed for subsets, samples, KID subsets and tests (default 0)")
    s.add_argument("--data-root", metavar="DIR", help="folder holding MNIST/raw etc. for NAME:SPLIT sources")
    s.add_argument("--image-size", type=int, metavar="S", help="resize folder images to S x S")
    s.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    # report
    s = sub.add_parser("report", help="write RUN_DIR/report.html", formatter_class=_formatter,
                       description="Write a self-contained HTML report (images embedded): test metrics, training "
                       "curves and warnings, reconstructions (models with an encoder), and for generative models "
                       "samples, a latent interpolation, one row per class (conditional GANs) or the samples over "
                       "the mixture's means (ring8, grid25).")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("--best", action="store_true",
                   help="report on best.safetensors, the best-scoring weights of train.quality_every, with their "
                   "metrics computed now (default out: RUN_DIR/report-best.html)")
    s.add_argument("--data-root", metavar="DIR", help="where the data set lives, if not where it was trained")
    s.add_argument("--out", metavar="FILE.html", help="default RUN_DIR/report.html")

    # encode
    s = sub.add_parser("encode", help="write the codes of a data split to an .npz", formatter_class=_formatter,
                       description="Encode every image of a split with the run's encoder (no gradients, in batches; "
                       "VAEs give the posterior mean) and write FILE.npz with arrays z (N x code size, float32) and, "
                       "when the data set has labels, y (N, int64). Written atomically.",
                       epilog="""examples:
  genlab encode runs/ae-mnist --out codes.npz
  genlab encode runs/ae-mnist --split train --out train_codes.npz
  genlab encode runs/ae-mnist --data fashion-mnist --out fashion_codes.npz   # another data set of the same shape
""")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("--out", required=True, metavar="FILE.npz", help="output file (arrays z and y)")
    s.add_argument("--data", metavar="NAME", help="encode another data set of the same image shape (default: the run's)")
    s.add_argument("--data-root", metavar="DIR", help="where the data set lives, if not where it was trained")
    s.add_argument("--split", default="test", choices=["test", "val", "train"], help="split (default test)")

    # classify
    s = sub.add_parser("classify", help="classify with autoencoders: codes as features, or one autoencoder per class",
                       formatter_class=_formatter,
                       description="Two ways to classify with autoencoders, both scored by the test accuracy. "
                       "Method I (RUN_DIR): the run's codes of the training split are the features of a classifier "
                       "(standardised, then logistic regression, a linear SVM or an RBF SVM, scikit-learn), scored "
                       "on the codes of the test split. "
                       "Method II (--per-class MODEL --data NAME --out DIR): trains one MODEL per class on that "
                       "class's training images (DIR/class-<c>, with DIR/index.json) and gives each test image to "
                       "the class whose autoencoder reconstructs it with the smallest squared error. "
                       "Prints one summary line, or one JSON object with --json.",
                       epilog="""examples:
  genlab classify runs/ae-mnist                          # method I, logistic regression on the codes
  genlab classify runs/ae-mnist --classifier svm --json
  genlab classify --per-class ae --data digits --out runs/per-class --epochs 20 --set hidden=[64] latent=8
  genlab classify --per-class ae --data mnist --data-root DIR --out runs/pc --epochs 5 --set train.threads=1

--set KEY=VALUE (method II) reaches the model, train and data fields as in `genlab train`;
--set data.classes=[0,1,2] limits the problem to those classes.
""")
    s.add_argument("run", nargs="?", metavar="RUN_DIR", help="method I: a trained run whose codes are the features")
    s.add_argument("--per-class", metavar="MODEL", help="method II: train one MODEL per class (see `genlab list models`)")
    s.add_argument("--data-root", metavar="DIR", help="folder holding MNIST/raw etc.")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    g = s.add_argument_group("method I (RUN_DIR)")
    g.add_argument("--classifier", metavar="NAME",
                   help="logreg (default; multinomial logistic regression, max_iter 2000), svm (LinearSVC) or "
                   "rbf-svm (SVC, RBF kernel; slow beyond ~20000 training codes, see --max-train)")
    g.add_argument("--C", type=float, metavar="X", help="inverse regularisation strength of the classifier (default 1)")
    g.add_argument("--max-train", type=int, metavar="N", help="fit on a seeded random subset of N training codes (default: all)")
    g = s.add_argument_group("method II (--per-class MODEL)")
    g.add_argument("--data", metavar="NAME", help="digits (default), mnist, fashion-mnist, cifar10, folder:PATH or npz:PATH")
    g.add_argument("--out", metavar="DIR", help="folder for the per-class runs and index.json (required)")
    e = g.add_mutually_exclusive_group()
    e.add_argument("--epochs", type=int, metavar="N", help="epochs per class (default 10)")
    e.add_argument("--steps", type=int, metavar="N", help="optimizer steps per class instead of epochs")
    g.add_argument("--batch-size", type=int, metavar="B", help="examples per step (default 128)")
    g.add_argument("--lr", type=float, metavar="X", help="learning rate (default 1e-3)")
    g.add_argument("--device", metavar="DEV", help="auto (default), cpu, cuda, cuda:N")
    g.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="model, train or data fields")
    g.add_argument("-q", "--quiet", action="store_true", help="no per-class progress lines on stderr")
    s.add_argument("--seed", type=int, metavar="S", help="seed of the classifier's subset (I) or of the training (II) (default 0)")

    # embed
    s = sub.add_parser("embed", help="autoencoder vs PCA at the same code size: errors and a 2-D scatter",
                       formatter_class=_formatter,
                       description="Compare the run's autoencoder with PCA of the same code size (fitted on the "
                       "training split): prints the test reconstruction error (MSE per pixel) of both and writes "
                       "a PNG with two scatter plots of the test split coloured by label. The autoencoder panel "
                       "shows the code itself when it has 2 units, otherwise the first two principal components "
                       "of the codes; the PCA panel the first two principal components of the pixels (at most 5000 "
                       "points, a fixed subset).",
                       epilog="""examples:
  genlab embed runs/ae-mnist                      # writes runs/ae-mnist/embed.png
  genlab embed runs/ae-mnist --out ae_vs_pca.png --json
""")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("--out", metavar="FILE.png", help="scatter plot (default RUN_DIR/embed.png)")
    s.add_argument("--data-root", metavar="DIR", help="where the data set lives, if not where it was trained")
    s.add_argument("--split", default="test", choices=["test", "val", "train"], help="split to reconstruct and plot (default test)")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    # denoise
    s = sub.add_parser("denoise", help="clean image files with a (denoising) autoencoder", formatter_class=_formatter,
                       description="Read each image file (PNG, JPEG, ...), convert it to the run's channels and size, "
                       "pass it through the autoencoder (a denoising-ae's denoise; any other autoencoder's "
                       "reconstruction) and write DIR/NAME.png at the run's resolution. Prints each written path.",
                       epilog="""examples:
  genlab denoise runs/dae-mnist noisy1.png noisy2.png --out cleaned/
""")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder")

    # anomaly
    s = sub.add_parser("anomaly", help="rank images by reconstruction error (anomaly scores)", formatter_class=_formatter,
                       description="Score every image of a data split (default: the run's data set, test split) or "
                       "the given image files by its reconstruction error, the squared error summed over pixels "
                       "(sse; mse is the same per pixel), and list the highest first. Denoising autoencoders also "
                       "report sse_corrupted, the error of reconstructing a corrupted copy (seed 0).",
                       epilog="""examples:
  genlab anomaly runs/ae-mnist --top 20
  genlab anomaly runs/ae-mnist --data fashion-mnist --json     # out-of-distribution images
  genlab anomaly runs/ae-mnist-3 --all-classes                 # a run trained with data.classes=[3]
  genlab anomaly runs/ae-mnist --images a.png b.png
""")
    s.add_argument("run", metavar="RUN_DIR")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--data", metavar="NAME", help="score another data set of the same image shape")
    g.add_argument("--images", nargs="+", metavar="IMAGE", help="score these image files instead of a data split")
    s.add_argument("--data-root", metavar="DIR", help="where the data set lives, if not where it was trained")
    s.add_argument("--split", default="test", choices=["test", "val", "train"], help="split (default test)")
    s.add_argument("--all-classes", action="store_true",
                   help="score every class even when the run was trained on data.classes=[...] (one-class anomaly detection)")
    s.add_argument("--top", type=int, default=10, metavar="N", help="list the N highest scores (default 10; 0: all)")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    # predict
    s = sub.add_parser("predict", help="classify image files with a classifier run", formatter_class=_formatter,
                       description="Classify each image file with a classifier run (genlab train classifier): the file "
                       "is read as the run's training images were (grey or RGB, resized; for folder: data sets the "
                       "short side resized and a centred square cropped) and the top K classes are printed with "
                       "their probabilities, one line per file (or one JSON object with --json).",
                       epilog="""examples:
  genlab predict runs/classifier-photos cat.jpg dog.png --top 3
  genlab predict runs/classifier-mnist digit.png --json
""")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="image files (png, jpg, ...)")
    s.add_argument("--top", type=int, default=1, metavar="K", help="classes to show per image (default 1)")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    # features
    s = sub.add_parser("features", help="export a classifier's embeddings (the head's inputs) to an .npz",
                       formatter_class=_formatter,
                       description="Write the features that feed a classifier run's head (after the backbone's "
                       "pooling; the frozen part of a linear probe) for every image of a split, or for image files, "
                       "to FILE.npz: arrays z (N x feature size, float32), y (labels, for a split) or files (for image "
                       "files). Written atomically. For autoencoder codes use genlab encode.",
                       epilog="""examples:
  genlab features runs/classifier-fashion --split test --out fashion_test.npz
  genlab features runs/classifier-photos a.jpg b.jpg --out two.npz
""")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("images", nargs="*", metavar="IMAGE", help="image files (default: the run's data split)")
    s.add_argument("--out", required=True, metavar="FILE.npz", help="output file")
    s.add_argument("--split", default="test", choices=["test", "val", "train"], help="split when no image files are given (default test)")
    s.add_argument("--data-root", metavar="DIR", help="where the data set lives, if not where it was trained")

    # inspect
    s = sub.add_parser("inspect", help="show what a CNN learned: first-layer filters and feature maps",
                       formatter_class=_formatter,
                       usage="genlab inspect (RUN_DIR | --backbone NAME [--weights W]) [IMAGE] [--layers A,B,...] "
                       "[--channels K] [--panel] [--list-layers] --out DIR",
                       description="Make visible what a network's layers detect: the first layers small features "
                       "such as edges and colour contrasts, later layers compounds of them. Writes DIR/filters.png "
                       "(the first convolution's filters, each min-max normalised on its own, enlarged). With an "
                       "IMAGE also DIR/input.png and DIR/features-LAYER.png for each layer: the first K channels of "
                       "its activation, each min-max normalised, from one forward pass in eval mode; --panel adds "
                       "DIR/panel.png, the image and the first min(K, 8) channels of an early, a middle and the last "
                       "stage (or of --layers) in one figure. A layer is a stage name (stem, layer1, ...: the output of the stage) or any module "
                       "name of the network (layer2.0.conv1, features.3); see --list-layers. With RUN_DIR (a "
                       "classifier run) the run's network is used and IMAGE is read as its training images were; "
                       "with --backbone a fresh backbone, IMAGE read as RGB (grey for 1-channel backbones), the "
                       "short side resized to its input size and a centred square cropped. Prints the files written.",
                       epilog="""examples:
  genlab inspect --backbone efficientnet_lite0 cat.jpg --panel --out inspect/lite0
  genlab inspect --backbone resnet18 --weights none cat.jpg --layers stem,layer2.0.conv1 --out inspect/r18
  genlab inspect runs/classifier-photos cat.jpg --channels 32 --out inspect/run
  genlab inspect --backbone resnet18 --list-layers
""")
    s.add_argument("target", nargs="?", metavar="RUN_DIR", help="a classifier run (not with --backbone)")
    s.add_argument("image", nargs="?", metavar="IMAGE", help="an image file (png, jpg, ...) for the feature maps")
    s.add_argument("--backbone", metavar="NAME", help="a fresh backbone instead of a run (genlab list backbones)")
    s.add_argument("--weights", metavar="W", help="with --backbone: imagenet (default), none (random init) or a .pth/.safetensors file")
    s.add_argument("--download", action="store_true", help="with --backbone: allow downloading ImageNet weights missing from the torch hub cache")
    s.add_argument("--layers", metavar="A,B,...", help="comma-separated stage or module names (default: every stage)")
    s.add_argument("--channels", type=int, default=16, metavar="K", help="channels shown per layer (default 16)")
    s.add_argument("--panel", action="store_true", help="also write DIR/panel.png: the image and min(K, 8) channels of several layers in one figure")
    s.add_argument("--list-layers", action="store_true", help="print the stage names, then every module name with its type, and exit")
    s.add_argument("--out", metavar="DIR", help="folder for the PNG files (required unless --list-layers)")

    # stylize
    s = sub.add_parser("stylize", help="neural style transfer: CONTENT painted in the style of STYLE",
                       formatter_class=_formatter,
                       usage="genlab stylize CONTENT STYLE --out OUT.png [--size PX] [--preset P] [--steps N] "
                       "[--optimizer lbfgs|adam] [--preserve-color] [--scales N] [options]\n"
                       "       genlab stylize --net RUN_DIR IMAGE... --out DIR_OR_FILE.png [--size PX] [--device DEV]",
                       description="Neural style transfer (Gatys et al. 2016): optimise the pixels of an image so "
                       "that a pretrained network's features at the content layers match CONTENT's (content loss "
                       "1/2 mean (F - P)^2) and the Gram matrices of its features at the style layers match STYLE's "
                       "(style loss: weighted mean squared difference of Grams F F^T / (C H W)), plus a total-variation "
                       "penalty. Presets: lectures (VGG16; content block2_conv2; style block1_conv2, block2_conv2, "
                       "block3_conv3, block4_conv3, block5_conv3), gatys (VGG19 with average pooling; content "
                       "conv4_2, style conv1_1 ... conv5_1, rectified as in Gatys' Caffe net: relu4_2, relu1_1 ... "
                       "relu5_1) and lite0 (efficientnet_lite0, whose ImageNet weights "
                       "ship with genlab[offline]). VGG weights are read from the torch hub cache, a --weights file, "
                       "or fetched with --download; nothing is downloaded otherwise. Writes OUT.png, OUT-loss.png "
                       "(loss curves, log scale) and OUT-panel.png (content | style | result), prints their paths, "
                       "and a summary (final losses, seconds per iteration) on stderr.",
                       epilog="""examples:
  genlab stylize photo.jpg starry.jpg --out out.png --size 256          # lectures preset, VGG16 from the hub cache
  genlab stylize photo.jpg starry.jpg --out out.png --preset lite0      # works offline with genlab[offline]
  genlab stylize photo.jpg starry.jpg --out out.png --preset gatys --weights vgg19.pth --scales 3 --size 512
  genlab stylize photo.jpg starry.jpg --out out.png --preserve-color --init noise --steps 500
  genlab stylize photo.jpg starry.jpg --out out.png --style-layers block1_conv2,block3_conv3 --style-weight 1e7
  genlab stylize --net runs/starry a.jpg b.jpg --out styled/    # a trained style-net: one forward pass per image

--net RUN_DIR: a feed-forward network trained with `genlab train style-net --style STYLE.jpg --data
folder:PHOTOS` (Johnson et al. 2016) paints each IMAGE at its own size (or --size PX), writes OUT.png (one
image) or DIR/STEM.png, prints their paths, and the milliseconds per image on stderr.

Layers: on VGG the Keras names blockB_convC (ReLU outputs), the Gatys names convB_C (before the ReLU) and
reluB_C, or torchvision module names (features.8); on other backbones stage or module names (genlab inspect
--backbone NAME --list-layers). --random-weights uses an untrained network: for tests and timing only.
""")
    s.add_argument("inputs", nargs="*", metavar="CONTENT STYLE | IMAGE...", help="the content and the style image (png, jpg, ...); with --net, the images to stylise")
    s.add_argument("--net", metavar="RUN_DIR", help="a trained style-net run: stylise the IMAGEs with it (no optimisation)")
    s.add_argument("--out", required=True, metavar="OUT.png", help="the result; OUT-loss.png and OUT-panel.png go beside it (--net: OUT.png for one image, else a folder)")
    s.add_argument("--size", type=int, metavar="PX", help="the result's longer side; aspect ratio kept, the style image resized to the same longer side (default 256; --net: each image's own size)")
    s.add_argument("--preset", default="lectures", choices=["lectures", "gatys", "lite0"], help="network, layers and weights (default lectures)")
    s.add_argument("--backbone", metavar="NAME", help="another network than the preset's (genlab list backbones); give its layers too")
    s.add_argument("--weights", metavar="PATH", help="a local .pth/.safetensors state dict instead of the cached ImageNet weights")
    s.add_argument("--download", action="store_true", help="allow downloading ImageNet weights missing from the torch hub cache")
    s.add_argument("--content-layers", metavar="A,B", help="comma-separated content layers (default: the preset's)")
    s.add_argument("--style-layers", metavar="A,B,...", help="comma-separated style layers, equally weighted (default: the preset's)")
    s.add_argument("--content-weight", type=float, metavar="A", help="weight of the content loss (default: the preset's, 1)")
    s.add_argument("--style-weight", type=float, metavar="B", help="weight of the style loss (default: the preset's, 1e6)")
    s.add_argument("--tv-weight", type=float, metavar="C", help="weight of the total-variation loss, mean squared neighbour difference (default: the preset's)")
    s.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam"], help="lbfgs (default) or adam (lr 0.02)")
    s.add_argument("--steps", type=int, default=200, metavar="N",
                   help="per scale: L-BFGS iterations, each exactly one loss evaluation (forward + backward; no line "
                   "search), or Adam steps (default 200)")
    s.add_argument("--init", default="content", choices=["content", "noise", "style"], help="starting image (default content)")
    s.add_argument("--preserve-color", action="store_true", help="luminance-only transfer: keep the content's colours (YIQ chroma)")
    s.add_argument("--scales", type=int, default=1, metavar="N", help="coarse to fine: N sizes from PX/2^(N-1) to PX, each started from the last (default 1)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the noise init and of --random-weights (default 0)")
    s.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:N (default: cuda when available)")
    s.add_argument("--random-weights", action="store_true", help="an untrained network: results are meaningless (tests, speed measurements)")

    # visualize
    s = sub.add_parser("visualize", help="feature visualisation: the image a filter of a layer responds to most",
                       formatter_class=_formatter,
                       usage="genlab visualize --backbone NAME [--weights W | --random-weights] --layer L "
                       "[--filter F | --filters K] --out OUT.png [--size PX] [--steps N] [--lr X] [--jitter PX] "
                       "[--blur-every N] [--blur-sigma S] [--seed S]",
                       description="Activation maximisation (the lectures' \"(almost) style transfer\"): starting "
                       "from grey plus small random noise, gradient-ascend (Adam) the pixels of an image so that "
                       "the mean activation of channel F of layer L of a frozen network is as high as possible, "
                       "minus an optional L2 penalty. Regularisers keep it from becoming high-frequency noise: the "
                       "image is rolled by a random offset of up to --jitter px at every step, blurred (Gaussian, "
                       "--blur-sigma px) every --blur-every steps and clamped to [0, 1] (the network sees it "
                       "normalised with its own mean and std). --filters K makes a grid of the first K filters, "
                       "optimised together in one batch. Writes OUT.png atomically, prints its path, and the mean "
                       "activation at the start and the end on stderr.",
                       epilog="""examples:
  genlab visualize --backbone vgg16 --layer block3_conv3 --filter 12 --out f12.png
  genlab visualize --backbone efficientnet_lite0 --layer blocks_s8 --filters 16 --out lite0-s8.png --size 96
  genlab visualize --backbone resnet18 --weights resnet18.pth --layer fc --filter 281 --steps 300 --out cat.png

Layers: stage or module names (genlab inspect --backbone NAME --list-layers); on VGG also blockB_convC and
convB_C / reluB_C. With ImageNet weights (the cached ones, or a file holding the 1000-class head) the head is
kept, so --layer fc (classifier.6 on VGG) and --filter N show ImageNet class N. --random-weights uses an untrained network: for tests and timing only.
""")
    s.add_argument("--backbone", required=True, metavar="NAME", help="the network (genlab list backbones)")
    s.add_argument("--weights", metavar="W", help="imagenet (default: the cached ImageNet weights) or a .pth/.safetensors file")
    s.add_argument("--download", action="store_true", help="allow downloading ImageNet weights missing from the torch hub cache")
    s.add_argument("--random-weights", action="store_true", help="an untrained network: shows nothing learned (tests, speed measurements)")
    s.add_argument("--layer", required=True, metavar="L", help="the layer: a stage or module name, or a VGG Keras/Gatys name")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--filter", type=int, metavar="F", help="the channel to maximise (default 0)")
    g.add_argument("--filters", type=int, metavar="K", help="a grid of the first K channels instead")
    s.add_argument("--out", required=True, metavar="OUT.png", help="the image (a grid with --filters)")
    s.add_argument("--size", type=int, default=128, metavar="PX", help="side of the square image (default 128)")
    s.add_argument("--steps", type=int, default=100, metavar="N", help="Adam steps (default 100)")
    s.add_argument("--lr", type=float, default=0.05, metavar="X", help="Adam learning rate, pixels in [0, 1] (default 0.05)")
    s.add_argument("--jitter", type=int, default=4, metavar="PX", help="random roll of up to PX pixels per step (default 4; 0: none)")
    s.add_argument("--blur-every", type=int, default=4, metavar="N", help="Gaussian blur every N steps (default 4; 0: none)")
    s.add_argument("--blur-sigma", type=float, default=0.5, metavar="S", help="standard deviation of the blur in px (default 0.5)")
    s.add_argument("--l2", type=float, default=0.0, metavar="W", help="weight of the penalty mean((x - 0.5)^2) (default 0)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the noise, the jitter and --random-weights (default 0)")
    s.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:N (default: cuda when available)")

    # attack
    s = sub.add_parser("attack", help="adversarial examples (FGSM, PGD) against a classifier run: accuracy vs eps",
                       formatter_class=_formatter,
                       usage="genlab attack RUN_DIR --method fgsm|pgd --eps E[,E2,...] [--steps N] [--alpha A] [--n N] "
                       "[--split test] [--data-root DIR] [--out DIR] [--json]",
                       description="Attack a classifier run (genlab train classifier) with adversarial examples in "
                       "the L-infinity ball of radius eps around each image, in the [0, 1] pixel space of the run's "
                       "images (before the model's own resize and normalisation). FGSM (Goodfellow et al. 2015): one "
                       "step x + eps * sign(gradient of the cross-entropy), clamped to [0, 1]. PGD (Madry et al. "
                       "2018): a random start in the ball, then --steps sign-gradient steps of size --alpha (default "
                       "2.5 * eps / steps), each projected onto the ball and [0, 1]. The model is in eval mode and "
                       "its weights are not changed. For each eps the accuracy on the first N images of the split, "
                       "clean and attacked, is printed as a table (one JSON object with --json); OUT/accuracy-vs-eps.png "
                       "(the curve) and OUT/examples.png (clean images, attacked ones at the largest eps, the "
                       "perturbation magnified) are written atomically.",
                       epilog="""examples:
  genlab attack runs/classifier-mnist --method fgsm --eps 0.05,0.1,0.2,0.3
  genlab attack runs/classifier-mnist --method pgd --eps 0.1,0.3 --steps 40 --alpha 0.01 --n 1000 --json
""")
    s.add_argument("run", metavar="RUN_DIR", help="a classifier run")
    s.add_argument("--method", required=True, choices=["fgsm", "pgd"], help="the attack")
    s.add_argument("--eps", required=True, metavar="E[,E2,...]", help="comma-separated radii in pixel units (images in [0, 1])")
    s.add_argument("--steps", type=int, metavar="N", help="pgd: steps (default 10)")
    s.add_argument("--alpha", type=float, metavar="A", help="pgd: step size (default 2.5 * eps / steps)")
    s.add_argument("--n", type=int, default=500, metavar="N", help="attack the first N images of the split (default 500)")
    s.add_argument("--split", default="test", choices=["test", "val", "train"], help="split (default test)")
    s.add_argument("--data-root", metavar="DIR", help="where the data set lives, if not where it was trained")
    s.add_argument("--out", metavar="DIR", help="folder for the pictures (default RUN_DIR/attack-METHOD)")
    s.add_argument("--examples", type=int, default=8, metavar="K", help="images shown in examples.png (default 8)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="pgd: seed of the random start (default 0)")
    s.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:N (default: where the run's model is, the CPU)")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    # export
    s = sub.add_parser("export", help="export a part of a run's model (encoder, decoder, generator, ...) to ONNX",
                       formatter_class=_formatter,
                       description="Export one part of RUN_DIR's model as an ONNX graph with a dynamic batch "
                       "dimension. Parts: model (an autoencoder's reconstruction x -> x_hat, the default for "
                       "autoencoders), encoder (x -> code; a VAE's gives mean and logvar, a classifier's the "
                       "features), decoder (z -> x, in the data's value range), generator (GANs, the default: "
                       "z -> x as sample() draws it; conditional GANs take z and int64 labels), classifier "
                       "(images -> logits; the default for classifier and stacked-ae) and style-net (images -> "
                       "stylised images; any height and width with upsample=resize). The file carries genlab's "
                       "metadata (version, model, part, inputs, value range) in its metadata_props. Before it is "
                       "written, onnxruntime runs it on random inputs of batch 1 and 7 and its outputs must match "
                       "PyTorch's within 1e-4 (max abs difference); otherwise nothing is written and the command "
                       "fails. --time also measures milliseconds per batch on the CPU, PyTorch against "
                       "onnxruntime with the same threads. Needs onnx, onnxscript and onnxruntime: "
                       "pip install 'genlab[export]'.",
                       epilog="""examples:
  genlab export runs/dcgan-mnist --format onnx                    # RUN_DIR/generator.onnx
  genlab export runs/vae-mnist --format onnx --part decoder --out vae-decoder.onnx
  genlab export runs/classifier-mnist --format onnx --time --batch 64 --threads 1
  genlab export runs/style --format onnx --part style-net --json
""")
    s.add_argument("run", metavar="RUN_DIR", help="a run directory (what genlab train wrote)")
    s.add_argument("--format", default="onnx", choices=["onnx"], help="file format (only onnx for now; default onnx)")
    s.add_argument("--part", metavar="PART",
                   help="model, encoder, decoder, generator, classifier or style-net (default: the model's natural "
                   "part; a part the model lacks is an error naming those it has)")
    s.add_argument("--out", metavar="FILE.onnx", help="output file (default RUN_DIR/PART.onnx)")
    s.add_argument("--opset", type=int, metavar="N", help="ONNX opset version (default: the exporter's own, 20 with torch 2.14; an older one where the exporter can convert the graph to it, often 16 or 17)")
    s.add_argument("--best", action="store_true", help="use best.safetensors, the best-scoring weights of train.quality_every, instead of the last")
    s.add_argument("--no-check", action="store_true", help="skip the onnxruntime check against PyTorch")
    s.add_argument("--time", action="store_true", help="also time PyTorch and onnxruntime on the CPU (ms per batch, median) and print their ratio")
    s.add_argument("--batch", type=int, default=64, metavar="B", help="--time: batch size (default 64)")
    s.add_argument("--repeats", type=int, default=20, metavar="N", help="--time: timed calls of each, after 3 warm-up calls (default 20)")
    s.add_argument("--threads", type=int, metavar="N", help="--time: CPU threads of both PyTorch and onnxruntime (default: torch's, i.e. $OMP_NUM_THREADS or the cores)")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    # demo
    s = sub.add_parser("demo", help="the main job: train, evaluate and report on embedded data", formatter_class=_formatter,
                       description="Train a VAE and an autoencoder on scikit-learn's digits (no download, a few "
                       "minutes on 2 CPU cores), evaluate them and write reports and an index page.")
    s.add_argument("--out", default="demo-out", metavar="DIR", help="output folder (default demo-out)")
    s.add_argument("--epochs", type=int, default=None, metavar="N", help="epochs per model (default: the demo's own)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    # bench
    s = sub.add_parser("bench", help="run a named benchmark, or list them", formatter_class=_formatter, add_help=False,
                       description="Benchmarks reproduce published numbers and measure speed against a reference "
                       "timed in the same run. `genlab bench list` names them; `genlab bench NAME --help` adds "
                       "that benchmark's protocol and settings.")
    s.add_argument("-h", "--help", action=_BenchHelp, help="show this help (with NAME: that benchmark's too) and exit")
    s.add_argument("name", metavar="NAME", help="a benchmark name, or `list`")
    s.add_argument("--quick", action="store_true", help="a minutes-long smoke version (what the test suite runs)")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    s.add_argument("--data-root", metavar="DIR", help="folder holding MNIST/raw etc. (default $GENLAB_DATA_ROOT or ../shared/data)")
    s.add_argument("--out", metavar="FILE.json", help="also write the result to this file")
    s.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="change a benchmark's setting, e.g. --set epochs=300 for vae-iwae-mnist")
    return p


def cmd_list(a) -> int:
    from .config import describe_fields
    from .data import DATASETS
    from .registry import MODELS

    if a.what in ("extractors", "backbones"):
        if a.what == "extractors":
            from .metrics.extractors import list_extractors as lister
        else:
            from .transfer.backbones import list_backbones as lister
        rows = lister()
        if a.what == "backbones" and a.verbose:  # the stages freeze:N counts (builds each network, random init)
            from .transfer.backbones import build_backbone

            rows = [(n, d + ("" if n.startswith("timm:") else "\n    stages: " + ", ".join(
                s for s, _ in build_backbone(n, 2, "none").stages()))) for n, d in rows]
        width = max(len(n) for n, _ in rows)
        for name, desc in rows:
            print(f"{name:<{width}}  {desc}")
        return 0
    reg = MODELS if a.what == "models" else DATASETS
    width = max(len(n) for n in reg.names())
    for e in reg.entries():
        print(f"{e.name:<{width}}  {e.description}")
        if a.verbose and a.what == "models":
            for name, tp, default, help_ in describe_fields(e.obj.Config):
                print(f"    {name}={json.dumps(default)}  ({tp}) {help_}")
    if a.what == "datasets":
        print(f"{'folder:PATH':<{width}}  an image folder, one subfolder per class (or train/ and test/ inside), resized to data.image_size")
        print(f"{'npz:PATH':<{width}}  arrays x (N x D, N x H x W or images) and optional y, x_test, y_test")
    return 0


def cmd_train(a) -> int:
    from .run import train

    if a.model is None and not (a.resume or a.config):
        raise GenlabError("MODEL: name the model to train (genlab list models), or continue a run with --out RUN_DIR --resume")

    sets = list(a.set)
    if a.download:
        sets.append("data.download=true")
        if a.model == "classifier":
            sets.append("model.download=true")
    for flag, key in (("backbone", "model.backbone"), ("strategy", "model.strategy"), ("weights", "model.weights")):
        value = getattr(a, flag)
        if value is not None:
            if a.model != "classifier":
                raise GenlabError(f"--{flag}: only the classifier model takes it (got model {a.model!r})")
            sets.append(f"{key}={json.dumps(value)}")
    if a.style is not None:
        if a.model != "style-net":
            raise GenlabError(f"--style: only the style-net model takes it (got model {a.model!r})")
        style = Path(a.style).expanduser()
        if not style.is_file():
            raise GenlabError(f"--style {a.style}: no such file")
        sets.append(f"model.style={json.dumps(str(style.resolve()))}")
    if a.labels_per_class is not None:
        sets.append(f"data.labels_per_class={a.labels_per_class}")
    if a.amp:
        sets.append(f"train.amp={a.amp}")
    if a.compile:
        sets.append("train.compile=true")
    run = train(a.model, a.data, out=a.out, config=a.config, set=sets, resume=a.resume, epochs=a.epochs,
                steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed, device=a.device,
                data_root=a.data_root, progress=not a.quiet and sys.stderr.isatty())
    from .train.distributed import is_main

    if not is_main():  # torchrun: rank 0 evaluates and reports
        return 0
    ev = json.loads((run.path / "eval.json").read_text())
    keys = [k for k in ("loss", "accuracy", "nelbo", "kl", "mse", "bce", "psnr", "ssim", "hole_psnr", "modes", "high_quality", "reverse_kl") if k in ev]
    print("test: " + ", ".join(f"{k}={ev[k]:.4g}" for k in keys) + f"  ({ev['train_seconds']:.1f} s training)", file=sys.stderr)
    print(run.path)
    return 0


def cmd_eval(a) -> int:
    from .run import load_run

    if a.iwae_k < 0:
        raise GenlabError(f"--iwae-k: expected a positive number of samples, got {a.iwae_k}")
    run = load_run(a.run, best=a.best)
    if a.samples < 0 or a.samples == 1:
        raise GenlabError(f"--samples: expected 0 (skip) or at least 2, got {a.samples}")
    res = run.evaluate(a.split, iwae_k=a.iwae_k, root=a.data_root, seed=a.seed,
                       progress=not a.json and sys.stderr.isatty(), sample_metrics=a.samples > 0,
                       sample_n=a.samples)
    _print_result(res, a.json)
    return 0


def _print_result(res: dict, as_json: bool) -> None:
    """Exactly one JSON object on stdout, or one aligned `key  value` line per entry."""
    if as_json:
        print(json.dumps(res))
        return
    table = res.get("per_class")
    scalars = {k: v for k, v in res.items() if k not in ("per_class", "confusion", "class_names")}
    width = max(map(len, scalars), default=0)
    for k, v in scalars.items():
        print(f"{k:>{width}}  {v:.6g}" if isinstance(v, float) else f"{k:>{width}}  {v}")
    if table:  # a classifier's per-class figures; the confusion matrix is in --json and the report
        w = max(len("class"), *(len(r["class"]) for r in table))
        print(f"\n{'class':<{w}}  precision  recall     f1  support")
        for r in table:
            print(f"{r['class']:<{w}}  {r['precision']:9.4f}  {r['recall']:6.4f}  {r['f1']:5.3f}  {r['support']:7d}")


LATENT_STEPS = 10  # points per line of `genlab sample --interpolate`


def _class_label(run, model, value: str, data_root: str | None) -> int:
    """``--class C``: a label 0..classes-1, or a class name of the run's data set."""
    k = int(model.config.classes)
    v = value.strip()
    if v.lstrip("-").isdigit():
        c = int(v)
        if not 0 <= c < k:
            raise GenlabError(f"--class {value}: expected a label in 0..{k - 1} (the model's {k} classes) or a class name")
        return c
    from .errors import DataError

    try:
        names = run.data(data_root).classes
    except DataError as e:
        raise GenlabError(f"--class {value}: class names come from the data set, which could not be loaded ({e}); "
                          f"give a label in 0..{k - 1}") from None
    names = [str(n) for n in (names or [])][:k]
    if not names:
        raise GenlabError(f"--class {value}: the data set {run.data_config.name} names no classes; give a label in 0..{k - 1}")
    if v in names:
        return names.index(v)
    folded = [i for i, n in enumerate(names) if n.casefold() == v.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise GenlabError(f"--class {value}: not a class of {run.data_config.name}; expected a label in 0..{k - 1} "
                      f"or one of: {', '.join(names)}")


def cmd_sample(a) -> int:
    import torch

    from .images import save_grid, save_npz
    from .report.figures import (is_conditional, latent_endpoints, latent_interpolation, latent_line,
                                 per_class_samples, require_latent, row_labels)
    from .run import load_run

    if a.n is not None and a.n < 1:
        raise GenlabError(f"--n: expected a positive number of samples, got {a.n}")
    for flag, value in (("--interpolate", a.interpolate), ("--per-class", a.per_class)):
        if value is not None and value < 1:
            raise GenlabError(f"{flag}: expected a positive count K, got {value}")
    if a.per_class is not None and (a.cls is not None or a.interpolate is not None):
        raise GenlabError("--per-class: draws every class in its own row; it does not combine with "
                          f"{'--class' if a.cls is not None else '--interpolate'}")
    if a.n is not None and (a.interpolate is not None or a.per_class is not None):
        flag = "--interpolate" if a.interpolate is not None else "--per-class"
        raise GenlabError(f"--n: not used with {flag}, whose K sets the number of samples")
    run = load_run(a.run, best=a.best)
    out = Path(a.out) if a.out else run.path / "samples" / "samples.png"
    if out.suffix not in (".png", ".npz"):
        raise GenlabError(f"--out {out}: expected a .png (grid) or .npz (raw samples) file name")
    image = len(run.config["shape"]) == 3
    if out.suffix == ".png" and not image and (a.interpolate or a.per_class or a.cls is not None):
        raise GenlabError(f"--out {out}: the data are vectors of shape {run.config['shape']}, not images; use .npz")
    model = run.model
    label = None
    if a.cls is not None or a.per_class is not None:
        if not is_conditional(model):
            flag = "--class" if a.cls is not None else "--per-class"
            raise GenlabError(f"{flag}: {run.model_name} is not a conditional model; classes need cgan or cdcgan "
                              "(trained on labelled data)")
        if a.cls is not None:
            label = _class_label(run, model, a.cls, a.data_root)
    arrays: dict = {}
    nrow = None
    if a.interpolate is not None:
        z0, z1 = latent_endpoints(require_latent(model, "--interpolate"), a.interpolate, a.seed)
        y = row_labels(model, a.interpolate, label)
        x = latent_interpolation(model, z0, z1, LATENT_STEPS, y).reshape(-1, *model.shape)
        arrays["z"] = latent_line(z0, z1, LATENT_STEPS).numpy()
        if y is not None:
            arrays["y"] = y.repeat_interleave(LATENT_STEPS).numpy()
        nrow = LATENT_STEPS
    elif a.per_class is not None:
        x, y = per_class_samples(model, a.per_class, a.seed)
        arrays["y"] = y.numpy()
        nrow = a.per_class
    elif label is not None:
        n = a.n or 64
        x = model.sample(n, torch.Generator().manual_seed(a.seed), labels=label).cpu()
        arrays["y"] = torch.full((n,), label, dtype=torch.long).numpy()
    else:
        x = run.sample(a.n or 64, seed=a.seed)
    if out.suffix == ".png":
        if not image:
            raise GenlabError(f"--out {out}: the data are vectors of shape {run.config['shape']}, not images; use .npz")
        save_grid(out, x, nrow=nrow, value_range=tuple(run.config["value_range"]))
    else:
        save_npz(out, x=x.cpu().numpy(), **arrays)
    print(out)
    return 0


def cmd_metrics(a) -> int:
    from .metrics.api import compute_metrics

    if a.n < 2:
        raise GenlabError(f"--n: expected at least 2 images per source, got {a.n}")
    res = compute_metrics(a.real, a.fake, metrics=[m.strip() for m in a.metrics.split(",") if m.strip()],
                          extractor=a.extractor, n=a.n, seed=a.seed, data_root=a.data_root,
                          image_size=a.image_size, use_cache=not a.no_cache)
    _print_result(res, a.json)
    return 0


def cmd_report(a) -> int:
    from .report import write_report
    from .run import load_run

    run = load_run(a.run, best=a.best)
    path = write_report(run, out=a.out, data_root=a.data_root)
    print(path)
    return 0


def _run_data(run, name: str | None, root: str | None, all_classes: bool = False):
    """The run's data set, or another one (``name``) of the same shape, prepared as the run's
    (binarisation etc.); ``all_classes`` drops the run's data.classes filter."""
    from dataclasses import asdict

    from .config import from_dict
    from .data import DataConfig, load_data

    if name is None and not all_classes:
        return run.data(root)
    cfg = asdict(run.data_config)
    if name is not None and name != cfg["name"]:
        cfg.update(name=name, classes=[])
    if all_classes:
        cfg["classes"] = []
    if root:
        cfg["root"] = root
    ds = load_data(from_dict(DataConfig, cfg, where="data"))
    if list(ds.shape) != list(run.config["shape"]):
        raise GenlabError(f"--data {ds.name}: images of shape {list(ds.shape)}, the run was trained on {run.config['shape']}")
    return ds


def cmd_encode(a) -> int:
    from .images import save_npz
    from .run import load_run
    from .uses import codes

    out = Path(a.out)
    if out.suffix != ".npz":
        raise GenlabError(f"--out {out}: expected a file name ending in .npz")
    run = load_run(a.run)
    ds = _run_data(run, a.data, a.data_root)
    z, y = codes(run.model, ds, a.split)
    save_npz(out, z=z, **({} if y is None else {"y": y}))
    print(f"{ds.name} {a.split}: {z.shape[0]} codes of size {z.shape[1]}{'' if y is not None else ' (no labels)'}",
          file=sys.stderr)
    print(out)
    return 0


def cmd_classify(a) -> int:
    if a.per_class is None:
        return _classify_codes(a)
    return _classify_per_class(a)


def _classify_codes(a) -> int:
    from .run import load_run
    from .uses import CLASSIFIERS, classify_codes

    if a.run is None:
        raise GenlabError("name a RUN_DIR (method I, codes as features) or --per-class MODEL (method II)")
    for flag, value in (("--data", a.data), ("--out", a.out), ("--epochs", a.epochs), ("--steps", a.steps),
                        ("--batch-size", a.batch_size), ("--lr", a.lr), ("--device", a.device), ("--set", a.set)):
        if value:
            raise GenlabError(f"{flag}: belongs to method II (--per-class MODEL); method I uses the run's data set")
    if a.max_train is not None and a.max_train < 1:
        raise GenlabError(f"--max-train: expected a positive count, got {a.max_train}")
    clf = a.classifier or "logreg"
    if clf not in CLASSIFIERS:
        raise GenlabError(f"--classifier {clf}: expected one of {', '.join(CLASSIFIERS)}")
    run = load_run(a.run)
    res = classify_codes(run, run.data(a.data_root), clf, C=1.0 if a.C is None else a.C, seed=a.seed or 0,
                         max_train=a.max_train or 0)
    res = {"method": "codes", "run": str(run.path), "data": run.data_config.name, **res}
    if a.json:
        print(json.dumps(res))
    else:
        warn = "" if res["converged"] else " (the solver did not converge)"
        print(f"method I ({clf} on the {res['code_size']}-d codes of {run.model_name}): test accuracy "
              f"{res['accuracy']:.4f} ({res['n_train']} train / {res['n_test']} test, "
              f"{res['encode_seconds'] + res['seconds']:.1f} s){warn}")
    return 0


def _classify_per_class(a) -> int:
    from .config import parse_set
    from .data import DataConfig
    from .run import route_overrides
    from .uses import per_class_autoencoders

    if a.run is not None:
        raise GenlabError(f"RUN_DIR {a.run}: give a run (method I) or --per-class MODEL (method II), not both")
    for flag, value in (("--classifier", a.classifier), ("--C", a.C), ("--max-train", a.max_train)):
        if value is not None:
            raise GenlabError(f"{flag}: belongs to method I (RUN_DIR); method II classifies by reconstruction error")
    if not a.out:
        raise GenlabError("--out: name the folder for the per-class runs, e.g. --out runs/per-class")
    for name in ("epochs", "steps", "batch_size"):
        value = getattr(a, name)
        if value is not None and value < 1:
            raise GenlabError(f"--{name.replace('_', '-')}: expected a positive number, got {value}")
    from .models import model_config_class

    model_config_class(a.per_class)  # an unknown model fails before any data is read
    routed = route_overrides(a.per_class, parse_set(list(a.set)))
    from .config import from_dict

    data_cfg = from_dict(DataConfig, {"name": a.data or "digits", **routed["data"]}, where="data")
    log = None if (a.quiet or a.json) else (lambda line: print(line, file=sys.stderr, flush=True))
    res = per_class_autoencoders(a.per_class, data_cfg, routed["model"], out=a.out, train=routed["train"],
                                 epochs=a.epochs, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                                 seed=a.seed or 0, device=a.device, data_root=a.data_root,
                                 progress=not (a.quiet or a.json) and sys.stderr.isatty(), log=log)
    summary = {"method": "per-class", "out": str(Path(a.out)), **{k: v for k, v in res.items()
                                                                   if k not in ("pred", "y", "errors")}}
    if a.json:
        print(json.dumps(summary))
    else:
        print(f"method II ({len(res['classes'])} x {a.per_class} on {data_cfg.name}, smallest reconstruction error): "
              f"test accuracy {res['accuracy']:.4f} ({res['n_test']} test, {res['seconds']:.1f} s) -> "
              f"{Path(a.out) / 'index.json'}")
    return 0


def cmd_embed(a) -> int:
    from .run import load_run
    from .uses import pca_vs_autoencoder, write_scatter

    run = load_run(a.run)
    out = Path(a.out) if a.out else run.path / "embed.png"
    if out.suffix != ".png":
        raise GenlabError(f"--out {out}: expected a file name ending in .png")
    ds = run.data(a.data_root)
    res = pca_vs_autoencoder(run, ds, a.split)
    write_scatter(out, res, ds.classes, title=f"{run.path.name}: {ds.name} {a.split} split, {res['n_test']} images")
    if a.json:
        print(json.dumps({"run": str(run.path), "data": ds.name, "split": a.split, "table": res["table"],
                          "code_size": res["code_size"], "pca_components": res["pca_components"],
                          "ae_mse": res["ae_mse"], "pca_mse": res["pca_mse"], "n_test": res["n_test"],
                          "projection_note": res["projection_note"], "plot": str(out)}))
        return 0
    from .bench import format_table

    print(format_table([{**r, "test_mse": float(f"{r['test_mse']:.6g}")} for r in res["table"]]))
    print(f"(mean squared error per pixel on {res['n_test']} {a.split} images; PCA fitted on the training split)")
    print(out)
    return 0


def cmd_denoise(a) -> int:
    from .run import load_run
    from .uses import denoise, read_images, write_png

    run = load_run(a.run)
    shape, vr = tuple(run.config["shape"]), tuple(run.config["value_range"])
    x = read_images(a.images, shape, vr)
    out_dir = Path(a.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise GenlabError(f"--out {out_dir}: exists and is not a folder")
    targets, used = [], set()
    for p in map(Path, a.images):
        name, i = f"{p.stem}.png", 2
        while name in used:
            name, i = f"{p.stem}-{i}.png", i + 1
        used.add(name)
        t = out_dir / name
        if t.resolve() == p.resolve():
            raise GenlabError(f"--out {out_dir}: would overwrite the input {p}; choose another folder")
        targets.append(t)
    model = run.model
    if not hasattr(model, "denoise"):
        print(f"note: {run.model_name} is not a denoising autoencoder; writing its reconstructions", file=sys.stderr)
    y = denoise(model, x)
    for t, img in zip(targets, y):
        write_png(t, img, vr)
        print(t)
    return 0


def cmd_anomaly(a) -> int:
    from .run import load_run
    from .uses import anomaly_scores, read_images

    if a.top < 0:
        raise GenlabError(f"--top: expected 0 (all) or a positive count, got {a.top}")
    run = load_run(a.run)
    if a.images:
        if a.all_classes:
            raise GenlabError("--all-classes: applies to a data split, not to --images")
        x = read_images(a.images, tuple(run.config["shape"]), tuple(run.config["value_range"]))
        y, source, names = None, "images", [str(p) for p in a.images]
    else:
        ds = _run_data(run, a.data, a.data_root, a.all_classes)
        x, y = ds.eval_inputs(a.split)
        source, names = f"{ds.name}:{a.split}", None
    scores = anomaly_scores(run.model, x)
    order = sorted(range(len(scores["sse"])), key=lambda i: -scores["sse"][i])
    if a.top:
        order = order[:a.top]
    items = []
    for rank, i in enumerate(order, 1):
        item = {"rank": rank}
        if names is not None:
            item["file"] = names[i]
        else:
            item["index"] = i
            if y is not None:
                item["label"] = int(y[i])
        item.update({k: float(v[i]) for k, v in scores.items()})
        items.append(item)
    if a.json:
        print(json.dumps({"run": str(run.path), "source": source, "n": len(scores["sse"]),
                          "mean_sse": float(scores["sse"].mean()), "items": items}))
        return 0
    from .bench import format_table

    print(f"{source}: {len(scores['sse'])} items, mean sse {float(scores['sse'].mean()):.6g}; highest first")
    print(format_table([{k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in it.items()} for it in items]))
    return 0


def cmd_predict(a) -> int:
    from .run import load_run
    from .transfer.use import predict

    rows = predict(load_run(a.run), a.images, top=a.top)
    if a.json:
        print(json.dumps({"run": a.run, "predictions": rows}))
        return 0
    for r in rows:
        print(f"{r['file']}: " + ", ".join(f"{t['class']} {t['prob']:.3f}" for t in r["top"]))
    return 0


def cmd_features(a) -> int:
    import numpy as np

    from .images import save_npz
    from .run import load_run
    from .transfer.use import embeddings, read_run_images

    out = Path(a.out)
    if out.suffix != ".npz":
        raise GenlabError(f"--out {out}: expected a file name ending in .npz")
    run = load_run(a.run)
    if a.images:
        z = embeddings(run, read_run_images(run, a.images))
        save_npz(out, z=z, files=np.asarray([str(p) for p in a.images]))
        what = f"{len(a.images)} image files"
    else:
        ds = run.data(a.data_root)
        x, y = ds.eval_inputs(a.split)
        z = embeddings(run, x)
        save_npz(out, z=z, **({} if y is None else {"y": y.cpu().numpy()}))
        what = f"{ds.name} {a.split}"
    print(f"{what}: {z.shape[0]} feature vectors of size {z.shape[1]}", file=sys.stderr)
    print(out)
    return 0


def cmd_inspect(a) -> int:
    from .transfer import inspect as ins

    image_path = a.image
    if a.backbone:
        if a.image is not None or (a.target is not None and Path(a.target).is_dir()):
            raise GenlabError(f"RUN_DIR {a.target}: give a RUN_DIR or --backbone NAME, not both")
        image_path, prepare = a.target, None
        from .transfer.backbones import build_backbone

        # the layer names do not depend on the weights: --list-layers builds without reading them
        weights = "none" if a.list_layers else a.weights or "imagenet"
        bb = build_backbone(a.backbone, 1000, weights, allow_download=a.download)
        title = f"{a.backbone} ({bb.weights})"
    else:
        if a.target is None:
            raise GenlabError("name a classifier RUN_DIR or --backbone NAME (see genlab inspect --help)")
        for flag, value in (("--weights", a.weights), ("--download", a.download)):
            if value:
                raise GenlabError(f"{flag}: belongs to --backbone; a RUN_DIR uses the run's own weights")
        from .run import load_run

        run = load_run(a.target)
        model = run.model
        if not hasattr(model, "backbone") or not hasattr(model, "prepare_input"):
            raise GenlabError(f"{a.target}: a {run.model_name} run; genlab inspect needs a classifier run "
                              "(genlab train classifier ...) or --backbone NAME")
        bb, prepare = model.backbone, model.prepare_input
        title = f"{run.path.name}: {model.config.backbone}"
    if a.list_layers:
        print("\n".join(ins.list_layers(bb)))
        return 0
    if not a.out:
        raise GenlabError("--out: name the folder for the pictures, e.g. --out inspect/")
    layers = [n.strip() for n in a.layers.split(",") if n.strip()] if a.layers else None
    if a.layers is not None and not layers:
        raise GenlabError("--layers: expected comma-separated layer names, e.g. --layers stem,layer1")
    image = None
    if image_path is not None and a.backbone:
        image = ins.read_image(bb, image_path)
    elif image_path is not None:
        from .transfer.use import read_run_images

        image = read_run_images(run, [image_path])
    for path in ins.inspect_to_dir(bb, a.out, image, prepare=prepare, layers=layers, channels=a.channels,
                                   panel=a.panel, title=title):
        print(path)
    return 0


def cmd_stylize(a) -> int:
    import warnings

    from .style.files import output_paths, write_stylize_files
    from .style.nst import load_image, stylize
    from .transfer.backbones import WeightsError

    if a.net is not None:  # a trained feed-forward network (style-net): one forward pass per image
        from .run import load_run
        from .style.net import stylize_files

        stray = [flag for flag, given in (
            ("--preset", a.preset != "lectures"), ("--backbone", a.backbone), ("--weights", a.weights),
            ("--download", a.download), ("--content-layers", a.content_layers), ("--style-layers", a.style_layers),
            ("--content-weight", a.content_weight is not None), ("--style-weight", a.style_weight is not None),
            ("--tv-weight", a.tv_weight is not None), ("--optimizer", a.optimizer != "lbfgs"),
            ("--steps", a.steps != 200), ("--init", a.init != "content"), ("--preserve-color", a.preserve_color),
            ("--scales", a.scales != 1), ("--seed", a.seed != 0), ("--random-weights", a.random_weights)) if given]
        if stray:
            raise GenlabError(f"{stray[0]}: belongs to CONTENT STYLE mode; --net uses the trained network as it is")
        if not a.inputs:
            raise GenlabError("--net: name the images to stylise, e.g. genlab stylize --net RUN_DIR a.jpg --out a-styled.png")
        run = load_run(a.net)
        if run.model_name != "style-net":
            raise GenlabError(f"--net {a.net}: a {run.model_name} run; expected a style-net run (genlab train style-net ...)")
        for r in stylize_files(run.model, a.inputs, a.out, size=a.size, device=a.device):
            print(r["output"])
            print(f"stylize: {r['input']} -> {r['output']}  {r['size'][0]}x{r['size'][1]} px  {r['ms']:.1f} ms",
                  file=sys.stderr)
        return 0
    if len(a.inputs) != 2:
        raise GenlabError(f"expected CONTENT STYLE (two images), got {len(a.inputs)}; or --net RUN_DIR IMAGE... "
                          "to use a trained style-net")
    a.content, a.style = a.inputs
    a.size = 256 if a.size is None else a.size
    out = Path(a.out)
    if out.suffix.lower() != ".png":
        raise GenlabError(f"--out {out}: expected a file name ending in .png")
    if any(p.exists() and p.is_dir() for p in output_paths(out)):
        raise GenlabError(f"--out {out}: a folder of that name exists")
    content, style = load_image(a.content), load_image(a.style)
    try:
        with warnings.catch_warnings():  # the random-weights warning, once the inputs are checked
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, *_a, **_k: print(f"genlab stylize: warning: {message}",
                                                                     file=sys.stderr)
            result, h = stylize(content, style, preset=a.preset, backbone=a.backbone, weights=a.weights,
                                allow_download=a.download, content_layers=a.content_layers,
                                style_layers=a.style_layers, content_weight=a.content_weight,
                                style_weight=a.style_weight, tv_weight=a.tv_weight, optimizer=a.optimizer,
                                steps=a.steps, init=a.init, size=a.size, preserve_color=a.preserve_color,
                                scales=a.scales, seed=a.seed, random_weights=a.random_weights, device=a.device)
    except WeightsError as e:
        hint = "" if a.preset == "lite0" or a.weights else "; or --preset lite0, which runs offline"
        raise GenlabError(f"{e}{hint}") from None
    n, secs, f = h["evaluations"], h["seconds"][-1], h["final"]
    title = (f"{a.preset}: {h['backbone']}{' (random weights)' if a.random_weights else ''}, {a.optimizer}, "
             f"{'x'.join(map(str, reversed(h['sizes'][-1])))} px")
    for path in write_stylize_files(out, result, content, style, h, title):
        print(path)
    what = "L-BFGS iterations" if a.optimizer == "lbfgs" else "Adam steps"
    print(f"stylize: {title}; {n} {what} over {len(h['sizes'])} scale(s) in {secs:.1f} s ({secs / n:.3f} s/iteration); "
          f"final loss {f['total']:.4g} = content {f['content']:.4g} + style {f['style']:.4g} + tv {f['tv']:.4g}",
          file=sys.stderr)
    return 0


def cmd_visualize(a) -> int:
    import warnings

    from .style.visualize import summary, visualize_layer, write_visualization

    out = Path(a.out)
    if out.suffix.lower() != ".png":
        raise GenlabError(f"--out {out}: expected a file name ending in .png")
    if out.is_dir():
        raise GenlabError(f"--out {out}: a folder of that name exists")
    if a.random_weights and a.weights:
        raise GenlabError("--weights and --random-weights: choose one")
    filters = a.filters if a.filters is not None else [0 if a.filter is None else a.filter]
    with warnings.catch_warnings():  # the random-weights warning, as one line
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *_a, **_k: print(f"genlab visualize: warning: {message}",
                                                                 file=sys.stderr)
        # a missing weights file is a WeightsError naming it, --weights and --download: exit 2
        images, h = visualize_layer(a.backbone, a.layer, filters, size=a.size, steps=a.steps, lr=a.lr,
                                    jitter=a.jitter, blur_every=a.blur_every, blur_sigma=a.blur_sigma, l2=a.l2,
                                    seed=a.seed, weights=a.weights, allow_download=a.download,
                                    random_weights=a.random_weights, device=a.device)
    write_visualization(out, images)
    print(out)
    print(summary(h), file=sys.stderr)
    return 0


def cmd_attack(a) -> int:
    from .run import load_run
    from .style.attack import accuracy_under_attack, classifier_of, parse_eps, write_attack_files

    eps = parse_eps(a.eps)
    if a.method == "fgsm":
        for flag, value in (("--steps", a.steps), ("--alpha", a.alpha)):
            if value is not None:
                raise GenlabError(f"{flag}: belongs to --method pgd (FGSM is one step of size eps)")
    if a.examples < 0:
        raise GenlabError(f"--examples: expected a count >= 0, got {a.examples}")
    run = load_run(a.run)
    model = classifier_of(run)
    out = Path(a.out) if a.out else run.path / f"attack-{a.method}"
    if out.exists() and not out.is_dir():
        raise GenlabError(f"--out {out}: exists and is not a folder")
    steps = 10 if a.steps is None else a.steps
    res = accuracy_under_attack(run, a.method, eps, a.n, split=a.split, data_root=a.data_root, steps=steps,
                                alpha=a.alpha, seed=a.seed, examples=a.examples, device=a.device)
    how = f"PGD, {steps} steps" if a.method == "pgd" else "FGSM"
    title = f"{run.path.name}: {model.config.backbone}, {how}"
    files = write_attack_files(out, res, model.config.class_names or None, title)
    res.pop("examples", None)
    res["files"] = [str(p) for p in files]
    if a.json:
        print(json.dumps(res))
        return 0
    from .bench import format_table

    print(f"{how} on {run.path} ({res['split']} split, first {res['n']} images; L-infinity eps in pixel units)")
    print(format_table([{"eps": r["eps"], "clean_accuracy": r["clean_accuracy"],
                         "attacked_accuracy": r["attacked_accuracy"]} for r in res["results"]]))
    for p in files:
        print(p)
    return 0


def cmd_export(a) -> int:
    import torch

    from .export import export_onnx, time_export
    from .run import load_run

    if a.batch < 1:
        raise GenlabError(f"--batch: expected a positive batch size, got {a.batch}")
    if a.repeats < 1:
        raise GenlabError(f"--repeats: expected a positive count, got {a.repeats}")
    if a.threads is not None and a.threads < 1:
        raise GenlabError(f"--threads: expected a positive number of threads, got {a.threads}")
    if a.time:  # the timing needs onnxruntime: say so before the export, not after it
        from .export import _require

        _require("onnxruntime")
    run = load_run(a.run, best=a.best)
    res = export_onnx(run, part=a.part, out=a.out, opset=a.opset, check=not a.no_check)
    if a.time:
        t = time_export(run, res, batch=a.batch, repeats=a.repeats, threads=a.threads or torch.get_num_threads())
        res.update({"torch_ms": t["torch_ms"], "onnx_ms": t["onnx_ms"], "ratio_onnx_to_torch": t["ratio"],
                    "time_batch": t["batch"], "time_threads": t["threads"], "time_repeats": t["repeats"]})
    if a.json:
        print(json.dumps(res))
        return 0
    sig = lambda items: ", ".join(f"{i['name']}: {i['dtype']}[{', '.join(map(str, i['shape']))}]" for i in items)  # noqa: E731
    print(f"wrote {res['path']} ({res['bytes'] / 1024:.1f} KiB, opset {res['opset']}): {res['model']} {res['part']}, "
          f"{sig(res['inputs'])} -> {', '.join(res['outputs'])}")
    if res["max_abs_diff"] is not None:
        print(f"check: onnxruntime vs PyTorch at batch 1 and 7, max abs difference {res['max_abs_diff']:.3g}")
    if a.time:
        print(f"time: batch {res['time_batch']}, {res['time_threads']} thread(s), median of {res['time_repeats']}: "
              f"PyTorch {res['torch_ms']:.3f} ms, onnxruntime {res['onnx_ms']:.3f} ms, "
              f"onnxruntime/PyTorch {res['ratio_onnx_to_torch']:.2f}")
    return 0


def cmd_demo(a) -> int:
    from .demo import run_demo

    path = run_demo(a.out, epochs=a.epochs, progress=not a.quiet and sys.stderr.isatty())
    print(path)
    return 0


def cmd_bench(a) -> int:
    from .bench import list_benchmarks, run_benchmark

    if a.name == "list":
        for name, desc in list_benchmarks():
            print(f"{name:<20}  {desc}")
        return 0
    from .config import parse_set

    res = run_benchmark(a.name, quick=a.quick, data_root=a.data_root, echo=not a.json,
                        params=dict(parse_set(a.set)))
    if a.out:
        from .io import atomic_write_json

        atomic_write_json(a.out, res)
    if a.json:
        print(json.dumps(res))
    return 0


COMMANDS = {"list": cmd_list, "train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "metrics": cmd_metrics,
            "report": cmd_report, "encode": cmd_encode, "classify": cmd_classify, "embed": cmd_embed,
            "denoise": cmd_denoise, "anomaly": cmd_anomaly, "demo": cmd_demo,
            "predict": cmd_predict, "features": cmd_features, "inspect": cmd_inspect, "stylize": cmd_stylize,
            "visualize": cmd_visualize, "attack": cmd_attack, "bench": cmd_bench, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a, extra = parser.parse_known_args(argv)
    if extra:  # an unknown option: named by the subcommand (`genlab train: error: ...`), like its other usage errors
        sub = next(x for x in parser._actions if isinstance(x, argparse._SubParsersAction)).choices[a.command]
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[a.command](a) or 0
    except GenlabError as e:
        print(f"genlab {a.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"genlab {a.command}: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    except BrokenPipeError:  # `genlab ... | head`: the reader left; not an error of genlab's
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug in genlab, not bad input
        if os.environ.get("GENLAB_DEBUG"):
            raise
        print(f"genlab {a.command}: internal error: {type(e).__name__}: {e} "
              "(set GENLAB_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
