from .engine import TrainConfig, fit  # noqa: F401
