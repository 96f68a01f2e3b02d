"""Chatterbox (Resemble AI): T3 fine-tuned, S3Gen and the voice encoder fixed (see adapter.py)."""

from voicetune.models.chatterbox.adapter import ChatterboxAdapter, create_chatterbox, create_tiny

__all__ = ["ChatterboxAdapter", "create_chatterbox", "create_tiny"]
