"""`voicetune studio`: the whole flow (data, training, checkpoints, synthesis) in a browser page."""
