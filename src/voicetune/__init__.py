"""voicetune: fine-tune voice-cloning TTS models on your own recordings, without losing progress."""

__version__ = "0.1.0"
