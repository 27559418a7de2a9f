"""The model: the parameter table (params.py), layers of a cell (stack.py), the language model
(lm.py), the task models of seed 002 (task.py, classify.py, tag.py), generation one step at a time (stepper.py) and the plain reference path (reference.py)."""

from .classify import CharClassifier
from .lm import CharRNN, ForwardCache, check_dropout
from .params import (DTYPES, INITS, MAX_PARAMETERS, cell_module, count_parameters, init_parameters, input_weight,
                     layer_names, orthogonal, parameter_shapes, resolve_dtype, single_bias_frozen)
from .reference import reference_loss_and_grads, reference_step
from .stepper import Stepper
from .tag import CharTagger

__all__ = [
    "CharClassifier", "CharRNN", "CharTagger", "DTYPES", "ForwardCache", "INITS", "MAX_PARAMETERS", "Stepper",
    "cell_module", "check_dropout", "count_parameters", "init_parameters", "input_weight", "layer_names", "orthogonal", "parameter_shapes", "reference_loss_and_grads", "reference_step", "resolve_dtype",
    "single_bias_frozen",
]
