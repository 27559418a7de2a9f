"""Every list of choices is spelled once (in config, the model, or the cell registry); the modules that act on a
choice agree with it."""

import pytest

from charrnn import settings as config
from charrnn.data import text as data
from charrnn.interop import export
from charrnn.core import CELLS
from charrnn.model import params
from charrnn.errors import ConfigError
from charrnn.model import CharRNN


def test_modules_use_the_lists_in_config():
    assert data.ENCODINGS is config.ENCODINGS
    assert export.FORMATS is config.EXPORT_FORMATS
    assert config.cell_names() == tuple(CELLS)
    assert config.INITS is params.INITS and config.DTYPES is params.DTYPES
    for init in config.INITS:
        for dtype in config.DTYPES:
            assert CharRNN(5, 3, init=init, dtype=dtype).dtype.name == dtype
    for bad in ("xavier", ""):
        with pytest.raises(ConfigError, match="init"):
            CharRNN(5, 3, init=bad)
