"""genlab: generative and representation learning as measured, reproducible software."""
__version__ = "0.1.0"

from .errors import GenlabError  # noqa: E402
from .models import create_model  # noqa: E402
from .run import Run, load_run, train  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .data import load_data, DataConfig  # noqa: E402

__all__ = ["GenlabError", "create_model", "train", "load_run", "Run", "evaluate", "load_data", "DataConfig", "__version__"]
