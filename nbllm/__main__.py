"""``python -m nbllm``: the ``nbllm`` command (``demo``, ``sim``, ``bench``, ``status``), also where the
console script is not on ``PATH`` (a notebook kernel started from another environment)."""

from ._cli import main

raise SystemExit(main())
