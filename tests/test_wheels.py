"""The host's wheelhouse for the VMs' Patroni venv (``wheels.wheelhouse``), built for real by pip
from a local project (no index needed): built once per set of requirements and then reused; a
requirement pip cannot build leaves nothing behind and names pip's reason."""

from __future__ import annotations

import pytest

from deployer.targets.base import TargetError
from deployer.targets.local.wheels import wheelhouse


@pytest.fixture
def project(tmp_path):
    src = tmp_path / "tiny"
    (src / "tiny").mkdir(parents=True)
    (src / "tiny" / "__init__.py").write_text("VERSION = '1.0'\n")
    (src / "pyproject.toml").write_text('[project]\nname = "tiny"\nversion = "1.0"\n'
                                        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n')
    return src


def test_built_once_then_reused_keyed_by_the_requirements(tmp_path, project):
    root = tmp_path / "wheels"
    built = wheelhouse([str(project), f" {project} "], root)
    assert [p.name for p in built.glob("*.whl")] == ["tiny-1.0-py3-none-any.whl"]
    stamp = (built / "READY").stat().st_mtime_ns
    assert wheelhouse([str(project)], root) == built and (built / "READY").stat().st_mtime_ns == stamp
    assert [p for p in root.iterdir() if not p.name.startswith(".")] == [built]


def test_a_requirement_pip_cannot_build_leaves_nothing_and_says_why(tmp_path):
    root = tmp_path / "wheels"
    with pytest.raises(TargetError, match=r"could not build the wheels of .*missing-project.*"):
        wheelhouse([str(tmp_path / "missing-project")], root)
    assert [p for p in root.iterdir() if not p.name.startswith(".")] == [], "no half-built wheelhouse"
