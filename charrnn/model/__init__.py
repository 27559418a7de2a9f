"""The model: the parameter table (params.py), layers of a cell (stack.py), the language model
(lm.py), the task models of seed 002 (task.py, classify.py, tag.py), generation one step at a time (stepper.py) and the plain reference path (reference.py)."""

from .classify import CharClassifier
from .lm import CharRNN, ForwardCache, check_dropout
from .params import (MAX_PARAMETERS, count_parameters, init_parameters, layer_names, orthogonal, parameter_shapes,
                     resolve_dtype)
from .reference import reference_loss_and_grads, reference_step
from .stepper import Stepper
from .tag import CharTagger

__all__ = [
    "CharClassifier", "CharRNN", "CharTagger", "ForwardCache", "MAX_PARAMETERS", "Stepper", "check_dropout", "count_parameters", "init_parameters",
    "layer_names", "orthogonal", "parameter_shapes", "reference_loss_and_grads", "reference_step", "resolve_dtype",
]
