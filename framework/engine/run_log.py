"""Log lines for the files only (train.log via Hydra's job logging), while a progress bar owns the terminal."""
from __future__ import annotations

import logging

logger = logging.getLogger("framework")


def log_to_files(message: str) -> None:
    """Write to the log files only: while a progress bar owns the terminal, per-iteration lines go here."""
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers + logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
