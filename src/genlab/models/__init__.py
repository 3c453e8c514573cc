"""Model families. Importing this package registers every model."""
from .base import GenModel, create_model, model_config_class  # noqa: F401
from .autoencoders import ae, classic, context, stacked, vae  # noqa: F401
from .gans import dcgan, gan  # noqa: F401
from ..transfer import classifier  # noqa: F401,E402  (the transfer-learning classifier)
from ..style import net as style_net  # noqa: F401,E402  (style-net: feed-forward style transfer)
