# Two commands do all the set-up on a fresh machine:
#   make demo   installs everything, then trains a tiny F5-TTS voice, kills and resumes it
#   make test   installs everything, then runs the test suite
#   make docs   builds the documentation site into site/ (mkdocs build --strict)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := espeak-ng ffmpeg sox libsndfile1 chromium \
  asterisk-core-sounds-es asterisk-core-sounds-es-wav asterisk-core-sounds-fr asterisk-core-sounds-fr-wav \
  asterisk-core-sounds-it asterisk-core-sounds-it-wav asterisk-core-sounds-ru asterisk-core-sounds-ru-wav \
  asterisk-moh-opsound-wav

.PHONY: demo test test-full check docs install system-packages clean

demo: $(STAMP)
	$(VENV)/bin/voicetune demo

test: $(STAMP)
	$(PY) -m pytest -n 2 tests

# Real-size f5-v1-base and xtts-v2 on the CPU (tests marked `full`, left out of `make test`).
test-full: $(STAMP)
	$(PY) -m pytest -m full tests -s

# Lint, format check and types over src/ (rules and their reasons: pyproject.toml's [tool.ruff] and [tool.mypy]).
check: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

# The documentation site: docs/ (the README is its front page, the CLI reference is rendered from
# the Typer app by mkdocs_hooks.py) into site/. --strict: a broken link, anchor or page fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

install: $(STAMP)

# Debian packages: espeak-ng speaks test and demo corpora, ffmpeg decodes mp3/m4a/video for
# prepare and is what torchcodec loads, sox is used by a few audio fixtures, chromium is the browser
# the studio's tests drive (through Playwright, which must not download a browser of its own); the
# asterisk packages are recorded human speech (Spanish, French, Italian, Russian telephone prompts with their
# texts) and hold music for the transcription tests and the prepare bench (tests/data/real_speech.py).
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml constraints.txt | system-packages
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install -q -c constraints.txt -e '.[test,docs]'
	# resemblyzer (speaker similarity) declares `typing` and `webrtcvad`, which cannot install on
	# Python 3.11 without a compiler; its real needs are direct dependencies in pyproject.toml.
	$(PY) -m pip install -q -c constraints.txt --no-deps resemblyzer==0.1.4
	# chatterbox-tts (the Chatterbox model family) pins torch 2.6, transformers 5.2, numpy < 2 and
	# gradio 6.8; it runs on voicetune's pinned stack, so it comes without its declared dependencies,
	# and so does s3tokenizer (it declares pre-commit). Their real needs are in pyproject.toml.
	$(PY) -m pip install -q -c constraints.txt --no-deps chatterbox-tts==0.1.7 s3tokenizer==0.3.0
	touch $(STAMP)

clean:
	rm -rf $(VENV) build site *.egg-info
