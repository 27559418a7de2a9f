"""Looking inside a network: what the textbooks explain by hand, measured on a trained model.

    impulse.py   the scalar filter h_t = w h_{t-1} + x_t (and its matrix form) fed a unit impulse
    gradflow.py  |dL_t/dh_{t-k}| by lag k, exactly, from the cells' own backward passes; the
                 recurrent weights' spectra, the state Jacobian, saturation, and a reading of them
    heatmap.py   every unit's activation along a text, and the units that track simple properties
    novelty.py   how much of a sample is copied from the training text (a suffix array)
    plots.py     the figures (matplotlib, an optional extra)
    analysis.py  the text a diagnostic reads (given, or the run's held-out text)

These read models and arrays only (core/ and model/); nothing here trains.
"""
