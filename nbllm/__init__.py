"""nbllm: LLMs that feel native in Jupyter.

    import nbllm
    llm = nbllm.LLM("openai:gpt-4o-mini")
    llm.invoke("Hello, how are you?").text
    results = await llm.amap(prompts)          # thousands of prompts, every key's limits respected
    results = await llm.amap(prompts, mode="batch")   # the same through provider batch APIs, half price
    rows = await llm.amap(prompts, schema=Result)   # parsed, validated, re-asked; rows.to_dataframe()
    df = await llm.afill(df, "Classify: {text}", to="label")   # a template over a table's rows
    llm.estimate(prompts); nbllm.prices()      # what it would cost, and the prices used
    %load_ext nbllm                            # then %%llm cells stream their answer

With no key configured, everything runs on the embedded simulator (``nbllm.sim``).
"""

from __future__ import annotations

from typing import Any

from ._api import (
    LLM,
    Batch,
    BatchSummary,
    Estimate,
    Fill,
    Results,
    cancel_provider_batch,
    provider_batches,
)
from ._batchapi import BatchAPIOptions, PollSchedule
from ._callbacks import BaseCallbackHandler, StreamingStdOutCallbackHandler
from ._client import RetryPolicy, Timeouts
from ._exceptions import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    BatchInterrupted,
    BatchPaused,
    ConfigurationError,
    NbllmError,
    NoKeyAvailableError,
    ProviderBatchError,
    ProviderError,
    QuotaExhaustedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    StreamInterruptedError,
    StructuredOutputError,
)
from ._keys import ApiKey, KeyPool
from ._pricing import prices, set_price
from ._store import Store
from ._types import (
    Attempt,
    Failure,
    Generation,
    LLMResult,
    Response,
    StreamEvent,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "ApiKey",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BaseCallbackHandler",
    "Batch",
    "BatchAPIOptions",
    "BatchInterrupted",
    "BatchPaused",
    "BatchSummary",
    "ConfigurationError",
    "Estimate",
    "Failure",
    "Fill",
    "Generation",
    "KeyPool",
    "LLM",
    "LLMResult",
    "NbllmError",
    "NoKeyAvailableError",
    "PollSchedule",
    "PromptPanel",
    "ProviderBatchError",
    "ProviderError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RequestTimeoutError",
    "Response",
    "Results",
    "RetryPolicy",
    "ServerError",
    "Store",
    "StreamEvent",
    "StreamInterruptedError",
    "StreamingStdOutCallbackHandler",
    "StructuredOutputError",
    "Timeouts",
    "Usage",
    "cancel_provider_batch",
    "enable_nesting",
    "load_ipython_extension",
    "prices",
    "provider_batches",
    "set_price",
]

for _name in __all__:
    _obj = globals().get(_name)
    if _obj is not None and getattr(_obj, "__module__", "").startswith("nbllm._"):
        try:
            _obj.__module__ = "nbllm"  # reprs and docs show nbllm.LLM, as httpx does
        except (AttributeError, TypeError):
            pass


def enable_nesting() -> None:
    """Let code that calls ``asyncio.run()`` work inside a running notebook loop (opt-in).

    Applies the maintained ``nest-asyncio2`` patch to the current loop. nbllm's own API never needs it;
    it exists for pasted scripts such as the key-pool seed that end in ``asyncio.run(main())``.
    """
    from ._nesting import enable_nesting as _enable

    _enable()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbllm``: register ``%%llm``, ``%llm`` and ``%llm_config``."""
    from ._jupyter import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from ._jupyter import unload_ipython_extension as _unload

    _unload(ipython)


def __getattr__(name: str) -> Any:
    # widgets import ipywidgets; only pay for it when a panel is asked for
    if name == "PromptPanel":
        from ._widgets import PromptPanel

        return PromptPanel
    raise AttributeError(f"module 'nbllm' has no attribute {name!r}")
