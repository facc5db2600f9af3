"""Compile ``bicep/main.bicep`` to an ARM JSON template with the Bicep CLI (``bicep`` or ``az bicep``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from deployer.paths import BICEP_DIR
from deployer.targets.base import MissingPrerequisite, TargetError

MAIN_BICEP = BICEP_DIR / "main.bicep"
NO_CLI = ("the Bicep CLI is not installed (neither `bicep` nor `az` is on PATH): install it "
          "(https://aka.ms/bicep-install, or `az bicep install`), or run on an Azure DevOps agent, "
          "which has it")

Compiler = Callable[[Path], dict]


def find_cli(which: Callable[[str], str | None] = shutil.which) -> list[str] | None:
    """The command that runs the Bicep CLI here, or None."""
    if which("bicep"):
        return ["bicep"]
    if which("az"):
        return ["az", "bicep"]
    return None


def cli_compiler(which: Callable[[str], str | None] = shutil.which) -> Compiler:
    """A compiler using the Bicep CLI; MissingPrerequisite (naming the fix) when there is none."""

    def compile_(path: Path) -> dict:
        cli = find_cli(which)
        if cli is None:
            raise MissingPrerequisite(NO_CLI)
        args = [*cli, "build", "--stdout", str(path)] if cli == ["bicep"] else \
            [*cli, "build", "--stdout", "--file", str(path)]
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise TargetError(f"compiling {path} with `{' '.join(cli)}` failed: {done.stderr.strip()[-2000:]}")
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise TargetError(f"`{' '.join(cli)} build` of {path} printed no ARM JSON: {exc}") from None

    return compile_
