"""Every list of choices is spelled once, in config; the modules that act on a choice agree with it."""

from charrnn import config, data, export, model


def test_modules_use_the_lists_in_config():
    assert data.ENCODINGS is config.ENCODINGS
    assert export.FORMATS is config.EXPORT_FORMATS
    # model.py keeps its own spelling until it reads these; until then they must not drift apart
    assert tuple(model.INITS) == config.INITS
    assert tuple(model.DTYPES) == config.DTYPES
