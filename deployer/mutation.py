"""``make mutation``'s last step: mutmut's CI/CD stats -> ``reports/mutation.json``
(``{"killed", "survived", "timeout", "no_tests", "score"}``, score = killed / (killed + survived +
no_tests), timeouts counted as killed: the mutant hung the code under test)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summary(stats: dict) -> dict:
    """The figures of mutmut's ``export-cicd-stats`` output, with the score."""
    killed = stats.get("killed", 0) + stats.get("timeout", 0)
    survived, untested = stats.get("survived", 0), stats.get("no_tests", 0)
    total = killed + survived + untested
    return {"killed": killed, "survived": survived, "timeout": stats.get("timeout", 0), "no_tests": untested,
            "score": round(killed / total, 3) if total else None}


def main(argv: list[str]) -> int:
    source, target = map(Path, argv)
    result = summary(json.loads(source.read_text()))
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
