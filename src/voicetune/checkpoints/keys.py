"""The names of a voicetune checkpoint's components (file stems): the keys of saved state.

`train.state` writes and reads them; `synthesis` reads model, ema and loop to rebuild a voice.
"""

MODEL, EMA_FILE, OPTIMIZER, RNG, LOOP = "model", "ema", "optimizer", "rng", "loop"
