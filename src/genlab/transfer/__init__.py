"""Transfer learning: pretrained backbones with a new head, freezing by depth, per-layer
learning rates and the lectures' rule that picks a strategy from the size of the data set."""
