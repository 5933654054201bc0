"""`python -m loadgen` is the same as `llm-observatory-loadgen`."""

from .cli import main

raise SystemExit(main())
