"""Scale-out reporting: collect runs of a sweep into tidy tables, draw curves, write tables, and log.

``python -m rlpref.report <sweep dir>`` is the entry point (see ``__main__``); ``loggers.make_logger``
is what ``rlpref.run`` calls to record metrics (csv by default, wandb offline optionally).
"""

from .loggers import Logger, make_logger

__all__ = ["Logger", "make_logger"]
