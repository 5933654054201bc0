"""`python -m loadgen` is the same as `llm-observatory-loadgen`."""

from loadgen.cli import main

raise SystemExit(main())
