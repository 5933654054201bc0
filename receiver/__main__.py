"""`python -m receiver` is the same as the `llm-observatory-receiver` command."""

from receiver.app.cli import main

raise SystemExit(main())
