"""Quiet Hugging Face libraries: the job log says what happened; load reports and progress bars do not."""
from __future__ import annotations

import os


PARALLELISM = "TOKENIZERS_PARALLELISM"


def enable_tokenizer_parallelism() -> bool:
    """Let the fast tokenizer batch-encode on every core, in a process that forks no further: a prefork worker's
    child, right after the fork (celery's worker_process_init). It is safe there because the parent never
    tokenizes, so no tokenizer thread pool was copied across the fork (what the tokenizers warning is about).
    TOKENIZERS_PARALLELISM set in the environment wins. Returns whether parallelism is on."""
    os.environ.setdefault(PARALLELISM, "true")
    return os.environ[PARALLELISM].strip().lower() in ("1", "true", "on", "yes")


def quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault(PARALLELISM, "false")  # where nothing enabled it: processes that may fork
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
