"""``python -m deployer.targets.azure.drift --name NAME``: does redeploying the stack change anything?

Azure Verified Modules prove each module idempotent by deploying it twice; the pipeline proves the
stack so after attach: a what-if of the last deployment's parameters must report no change
(``AzureTarget.drift``). Prints one line per change and exits 1 on drift, 0 without, 2 on an error.
"""

from __future__ import annotations

import argparse
import logging
import sys

from deployer.spec import load_spec
from deployer.state import StackState
from deployer.targets.azure.target import AzureTarget
from deployer.targets.base import TargetError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployer.targets.azure.drift", description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True, help="the stack's name (its state must be here)")
    name = parser.parse_args(argv).name
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    state = StackState.load(name)
    if state is None or state.target != "azure":
        print(f"error: no Azure stack named {name!r} here (under {StackState.path_for(name).parent})", file=sys.stderr)
        return 2
    try:
        changes = AzureTarget(load_spec(state.spec_path), state).drift()
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in changes:
        print(line)
    if changes:
        print(f"Drift: redeploying stack {name} would make {len(changes)} change(s); the deployment is not idempotent.")
        return 1
    print(f"No drift: redeploying stack {name} changes nothing.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
