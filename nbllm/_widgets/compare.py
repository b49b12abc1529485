"""The PromptPanel's "Compare" toggle: the same prompt to two models at once, answers side by side.

```python
panel.compare_toggle.value = True               # or click "Compare"
panel.compare_model_box.value = "gpt-4o"        # the second model ("with")
answers = await panel.send("Explain recursion")  # {model: Response}, streamed in two columns
```

The columns are ``compare.CompareView``'s, written into the panel's answer area at most ``refresh_hz``
times a second (the same throttle and budget as every live answer). A comparison is a side trip: it
does not continue the conversation, and the conversation so far is sent to both models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets

from .._call import CallRunner
from .._display import compare
from .._exceptions import ConfigurationError
from .._types import Message, Response

__all__ = ["CompareMode"]


class CompareMode:
    """Mixed into ``PromptPanel``: the toggle, the second model's box and the comparison's task."""

    compare_toggle: widgets.ToggleButton
    compare_model_box: widgets.Combobox

    def _build_compare(self, choices: Sequence[str]) -> None:
        self.compare_toggle = widgets.ToggleButton(description="Compare", icon="columns", value=False,
                                                   tooltip="Send the prompt to a second model too, side by side")
        self.compare_model_box = widgets.Combobox(
            options=list(choices), ensure_option=False, description="with", placeholder="second model",
            value=next((c for c in choices[1:]), ""), style={"description_width": "initial"},
            layout=widgets.Layout(width="240px", display="none"))
        self.compare_toggle.add_class("nbllm-panel-compare-toggle")
        self.compare_model_box.add_class("nbllm-panel-compare-model")
        self.compare_toggle.observe(self._compare_toggled, names="value")

    def _compare_toggled(self, change: Mapping[str, Any]) -> None:
        self.compare_model_box.layout.display = "" if change["new"] else "none"

    @property
    def comparing(self) -> bool:
        """True when Send asks two models (the toggle is on and a second model is named)."""
        return bool(self.compare_toggle.value and self.compare_model_box.value.strip())

    def _compare_runners(self, first: CallRunner, second: CallRunner, first_name: str) -> dict[str, CallRunner]:
        second_name = self.compare_model_box.value.strip()
        if second_name == first_name:
            raise ConfigurationError("Compare needs a second model: pick another one in the 'with' box.")
        return {first_name: first, second_name: second}

    async def _run_compare(self, runners: Mapping[str, CallRunner], messages: list[Message],
                           overrides: dict[str, Any]) -> dict[str, Response | None]:
        """The task Send starts in compare mode; Stop ends it with both partial answers kept on screen."""
        self._current = asyncio.current_task()
        answers: dict[str, Any] = {}
        try:
            if self._stopping:
                raise asyncio.CancelledError
            answers = await compare(runners, messages, overrides=overrides, refresh_hz=self.refresh_hz,
                                    sink=self._show_compare, on_interrupt=answers.update)
        except asyncio.CancelledError:
            if not self._stopping:
                self.set_trait("busy", False)
                raise
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()  # our own Stop: swallowed here, so enclosing timeouts stay right
        self.stats_view.value = ""  # each column shows its own numbers
        self.set_trait("busy", False)
        return answers

    def _show_compare(self, data: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        if not self._cleared:
            self.answer_view.value = f'<div class="nbllm-compare-view">{data["text/html"]}</div>'
