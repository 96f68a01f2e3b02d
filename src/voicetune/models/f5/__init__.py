"""F5-TTS for voicetune: the adapter (adapter.py) over the real f5-tts package.

Model names: f5-tiny (tests, demo), f5-v1-small and f5-v1-base (upstream's architectures).
"""

from voicetune.models.f5.adapter import F5Adapter, create_adapter
from voicetune.models.f5.spec import MODEL_NAMES, F5Spec, model_spec

__all__ = ["MODEL_NAMES", "F5Adapter", "F5Spec", "create_adapter", "model_spec"]
