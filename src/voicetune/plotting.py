"""matplotlib without a display: the one way every picture voicetune draws gets its pyplot."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend (PNG files, no window, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def preload_in_background() -> None:
    """Import pyplot in a background thread: it takes about a second, which a process that waits on
    others (prepare's parent, waiting on its workers) has to spare; its picture then starts at once."""
    import threading

    threading.Thread(target=pyplot, name="preload-matplotlib", daemon=True).start()
