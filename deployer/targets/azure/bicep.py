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
NO_CLI = ("the Bicep CLI is not installed (neither `bicep` nor `az` is on PATH): install a standalone "
          "`bicep` (https://aka.ms/bicep-install; on a laptop `az bicep install` also works); an Azure DevOps "
          "agent needs the standalone one (docs/azure.md, Agent image)")

Compiler = Callable[[Path], dict]


def find_cli(which: Callable[[str], str | None] = shutil.which) -> list[str] | None:
    """The command that prints ARM JSON for a Bicep file given last, with the CLI found here
    (``<bicep> build --stdout`` or ``<az> bicep build --stdout --file``), or None."""
    if path := which("bicep"):
        return [path, "build", "--stdout"]
    if path := which("az"):
        return [path, "bicep", "build", "--stdout", "--file"]
    return None


def cli_compiler(which: Callable[[str], str | None] = shutil.which) -> Compiler:
    """A compiler using the Bicep CLI: its stdout parsed as the template (its warnings go to stderr);
    MissingPrerequisite (naming the fix) when there is none, TargetError when it fails."""

    def compile_(path: Path) -> dict:
        cli = find_cli(which)
        if cli is None:
            raise MissingPrerequisite(NO_CLI)
        done = subprocess.run([*cli, str(path)], capture_output=True, text=True, check=False)
        command = " ".join(Path(cli[0]).name if i == 0 else a for i, a in enumerate(cli))
        if done.returncode != 0:
            raise TargetError(f"compiling {path} with `{command}` failed: {done.stderr.strip()[-2000:]}")
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise TargetError(f"`{command}` of {path} printed no ARM JSON: {exc}") from None

    return compile_
