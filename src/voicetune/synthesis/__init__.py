"""Using a trained voice: rebuild the model of a checkpoint (`inference`), synthesize with it and
export it in its upstream's format."""
