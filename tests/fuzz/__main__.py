"""Run one fuzz target under atheris: `python -m tests.fuzz TARGET [libFuzzer flags] [CORPUS_DIR]`.

An empty corpus directory is seeded first (targets.seeds). The receiver's modules are instrumented for
coverage; when the native extension was built with -fsanitize=fuzzer-no-link
(`make fuzz` does it where clang is installed), its C branches guide the fuzzer too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        raise SystemExit(__doc__)
    name, flags = sys.argv[1], sys.argv[2:]
    # The code under test, not the harness; and the pgcopy target's reference encoder, whose branches
    # (value kinds, refusals) guide that target where the C encoder is not instrumented.
    with atheris.instrument_imports(include=["receiver", "tests.support.pgcopy_reference"]):
        from tests.fuzz import targets
    if name not in targets.TARGETS:
        raise SystemExit(f"unknown target {name!r}; targets: {', '.join(targets.TARGETS)}")
    from receiver.convert.traces_bytes import NATIVE_STATUS, native_available

    if not native_available():  # the targets compare it with the reference: without it they prove nothing
        raise SystemExit(f"the native converter is not available: {NATIVE_STATUS}")
    corpus = [Path(arg) for arg in flags if not arg.startswith("-")]
    for directory in corpus[:1]:
        directory.mkdir(parents=True, exist_ok=True)
        if not any(directory.iterdir()):
            for i, seed in enumerate(targets.seeds(name)):
                (directory / f"seed-{i:03d}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *flags], targets.TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
