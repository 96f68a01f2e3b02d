"""ModelHealth, the policy behind /health: from how a model's requests ended, what the next one
meets (ok, degraded and reloaded once, failed), as a table of request endings."""

from __future__ import annotations

import pytest

from voicetune.synthesis.service import ModelHealth

ERROR = RuntimeError("tensor sizes do not match")


def replay(endings: str) -> tuple[ModelHealth, int]:
    """Each letter a request's ending: s succeeded, e a server error (a reload when asked for,
    which R makes fail), c cancelled, timed out or bad input (not counted)."""
    health, reloads_asked = ModelHealth(limit=3), 0
    for ending in endings:
        if ending == "s":
            health.succeeded()
        elif ending in "eR":
            if health.failed_with(ERROR):
                reloads_asked += 1
                health.reload_done(ERROR if ending == "R" else None)
    return health, reloads_asked


@pytest.mark.parametrize(
    "endings, status, reloads",
    [
        ("", "ok", 0),
        ("ee", "ok", 0),  # fewer than 3 in a row
        ("eese", "ok", 0),  # a success in between starts the count again
        ("ecce", "ok", 0),  # cancelled requests say nothing: still two in a row
        ("eee", "degraded", 1),  # reloaded once, and degraded until a success
        ("eees", "ok", 1),
        ("eeeee", "degraded", 1),  # not reloaded again before 3 more
        ("eeeeee", "failed", 1),  # the reloaded model failed 3 more: out of service
        ("eeR", "failed", 1),  # the reload itself failed
        ("eeRs", "failed", 1),  # a failed model stays failed (its requests are refused anyway)
        ("eeesee" + "e", "degraded", 2),  # a success between episodes: a new reload
    ],
)
def test_health_follows_how_requests_ended(endings, status, reloads):
    health, asked = replay(endings)
    assert (health.status, asked, health.reloads) == (status, reloads, reloads)
    if status != "ok":  # /health names what went wrong
        assert "tensor sizes do not match" in health.error
