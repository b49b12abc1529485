"""Progress of a batch: plain counters and rates (``state``) and their widget or text display (``display``)."""

from .display import ProgressDisplay, in_notebook
from .state import BatchProgress

__all__ = ["BatchProgress", "ProgressDisplay", "in_notebook"]
