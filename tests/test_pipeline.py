"""Offline checks of ``azure-pipelines.yml``: the stages, their order and conditions, the schedule,
the deployer commands, the published results, and that no secret is ever printed.

The pipeline is checked as Azure DevOps runs it: every ``- template:`` step is replaced by the
template's steps, its ``${{ parameters.x }}`` expressions substituted from the parameters given and
the template's defaults (``expand``), so every check sees the real steps. As Azure DevOps does, the
expansion refuses a parameter the template does not declare, a required one not given, and an
expression naming no parameter.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from deployer.paths import REPO

PIPELINE = REPO / "azure-pipelines.yml"
TEMPLATES = REPO / ".azure-pipelines"
#: A compile-time expression naming one parameter: ``${{ parameters.name }}``.
EXPRESSION = re.compile(r"\$\{\{\s*parameters\.(?P<name>[A-Za-z_]\w*)\s*\}\}")
STAGES = ["Validate", "Provision", "Configure", "Attach", "Smoke", "Chaos", "Teardown"]
SCHEDULE_ONLY = "eq(variables['Build.Reason'], 'Schedule')"
#: Macro references that are not secrets: Azure DevOps' predefined variables (dotted names).
MACRO = re.compile(r"\$\((?P<name>[A-Za-z0-9_.\-]+)\)")


class TemplateError(ValueError):
    """What Azure DevOps would refuse while expanding the templates."""


def parameter_values(declared: list[dict], given: dict, where: str) -> dict:
    """The values of a file's declared parameters: given, else the default; TemplateError for an
    undeclared or a missing required one."""
    names = {p["name"]: p for p in declared}
    if unknown := sorted(set(given) - set(names)):
        raise TemplateError(f"{where}: unexpected parameters {unknown}")
    if missing := sorted(n for n, p in names.items() if n not in given and "default" not in p):
        raise TemplateError(f"{where}: required parameters {missing} not given")
    return {n: given.get(n, p.get("default")) for n, p in names.items()}


def substitute(node, values: dict, where: str, used: set[str]):
    """``node`` with every ``${{ parameters.x }}`` replaced: a string that is one whole expression
    takes the value itself (a boolean stays one), otherwise the value's text is spliced in."""
    if isinstance(node, dict):
        return {k: substitute(v, values, where, used) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values, where, used) for v in node]
    if not isinstance(node, str):
        return node

    def value(name: str):
        if name not in values:
            raise TemplateError(f"{where}: ${{{{ parameters.{name} }}}} names no parameter")
        used.add(name)
        return values[name]

    whole = EXPRESSION.fullmatch(node.strip())
    if whole:
        return value(whole["name"])
    return EXPRESSION.sub(lambda m: str(value(m["name"])).rstrip("\n"), node)


def expand_steps(steps: list[dict], including: Path) -> list[dict]:
    """``steps`` with each ``- template: path`` (relative to the including file) replaced by the
    template's own steps, expanded in turn."""
    out = []
    for step in steps:
        if "template" not in step:
            out.append(step)
            continue
        path = (including.parent / step["template"]).resolve()
        raw = yaml.safe_load(path.read_text())
        values = parameter_values(raw.get("parameters", []), step.get("parameters", {}), path.name)
        used: set[str] = set()
        out += expand_steps(substitute(raw["steps"], values, path.name, used), path)
        if unused := sorted(set(values) - used):
            raise TemplateError(f"{path.name}: parameters {unused} are declared but never used")
    return out


def expand(path: Path, given: dict | None = None) -> dict:
    """The pipeline file as Azure DevOps runs it: its own parameters as ``given`` (a run's choices),
    else at their defaults, every step template expanded."""
    raw = yaml.safe_load(path.read_text())
    values = parameter_values(raw.get("parameters", []), given or {}, path.name)
    pipeline = substitute({k: v for k, v in raw.items() if k != "parameters"}, values, path.name, set())
    for stage in pipeline["stages"]:
        for job in stage["jobs"]:
            job["steps"] = expand_steps(job["steps"], path)
    return pipeline


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return expand(PIPELINE)


@pytest.fixture(scope="module")
def stages(pipeline) -> dict[str, dict]:
    return {s["stage"]: s for s in pipeline["stages"]}


def steps(stage: dict) -> list[dict]:
    return [step for job in stage["jobs"] for step in job["steps"]]


def script(step: dict) -> str:
    """The shell text a step runs (bash/script steps and AzureCLI@2 inline scripts)."""
    return step.get("bash") or step.get("script") or step.get("inputs", {}).get("inlineScript") or ""


def all_steps(pipeline) -> list[dict]:
    return [step for stage in pipeline["stages"] for step in steps(stage)]


def pipeline_variables(pipeline) -> set[str]:
    names = {v["name"] for v in pipeline["variables"] if "name" in v}
    for stage in pipeline["stages"]:
        names |= set(stage.get("variables", {}) or {})
    return names


def strings(node) -> list[str]:
    """Every string in a tree (keys and values)."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def secret_names(pipeline) -> set[str]:
    """Variables that come from the Key Vault group: referenced, yet neither defined here nor
    predefined by Azure DevOps."""
    defined = pipeline_variables(pipeline)
    return {m["name"] for text in strings(pipeline) for m in MACRO.finditer(text)
            if "." not in m["name"] and m["name"] not in defined}


def test_the_pipeline_loads_with_stages_in_order(pipeline):
    assert [s["stage"] for s in pipeline["stages"]] == STAGES


def test_each_stage_follows_the_previous_one(stages):
    for before, after in zip(STAGES[:-2], STAGES[1:-1]):
        assert stages[after]["dependsOn"] == before, after
    assert set(stages["Teardown"]["dependsOn"]) >= set(STAGES[1:-1])


NOT_ON_PRS = "ne(variables['Build.Reason'], 'PullRequest')"


def test_teardown_always_runs_but_not_on_pull_requests_which_deploy_nothing(stages):
    assert stages["Provision"]["condition"] == f"and(succeeded(), {NOT_ON_PRS})", "PRs run Validate only"
    assert stages["Teardown"]["condition"] == f"and(always(), {NOT_ON_PRS})"


def test_chaos_runs_only_on_the_nightly_schedule(stages):
    condition = stages["Chaos"]["condition"].replace(" ", "")
    assert SCHEDULE_ONLY.replace(" ", "") in condition
    assert condition.startswith("and(succeeded(),"), condition
    for name in STAGES:
        if name != "Chaos":
            assert "Schedule" not in stages[name].get("condition", ""), name


def test_nightly_schedule_runs_always(pipeline):
    (schedule,) = pipeline["schedules"]
    assert schedule["always"] is True
    fields = schedule["cron"].split()
    assert len(fields) == 5 and fields[2:] == ["*", "*", "*"], "nightly: every day"
    assert "main" in schedule["branches"]["include"]


def test_validate_runs_tests_bicep_checkov_and_ansible_lint(stages):
    text = "\n".join(script(s) for s in steps(stages["Validate"]))
    assert "pytest tests" in text
    assert "bicep build bicep/main.bicep" in text and "bicep lint" in text
    assert ".venv-checkov/bin/checkov -d bicep --framework bicep --skip-download" in text
    assert "make lint" in text or "ansible-lint" in text


def test_stack_stages_run_the_deployer_with_a_workload_identity_connection(pipeline, stages):
    until = {"Provision": "provision", "Configure": "configure", "Attach": "attach", "Smoke": "verify"}
    assert "serviceConnection" in pipeline_variables(pipeline)
    for name in STAGES[1:]:
        cli = [s for s in steps(stages[name]) if s.get("task") == "AzureCLI@2"]
        assert cli, f"{name} has no AzureCLI@2 step"
        for step in cli:
            assert step["inputs"]["azureSubscription"] == "$(serviceConnection)"
            assert step["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)", "AzurePipelinesCredential needs it"
        text = "\n".join(script(s) for s in cli)
        if name in until:
            assert re.search(r'deployer up --target azure --name "?\$\(stackName\)"?.* --until ' + until[name] + r"\b", text), name
        if name in until and name != "Provision":  # only its own stage: the ones before are done
            assert f"--from {until[name]} --until {until[name]}" in text, name
    assert "--what-if" in "\n".join(script(s) for s in steps(stages["Provision"]))
    assert "pytest suites -m chaos" in "\n".join(script(s) for s in steps(stages["Chaos"]))
    teardown = "\n".join(script(s) for s in steps(stages["Teardown"]))
    assert re.search(r'deployer down --name "?\$\(stackName\)', teardown)
    guard = teardown.index('if [ ! -f "$PGHA_STATE_ROOT/$(stackName)/state.json" ]')
    assert guard < teardown.index(".venv/bin/deployer down"), "no down without a state: it would fall back to the local target"


def test_results_and_reports_are_published(stages):
    for name in ("Validate", "Smoke", "Chaos"):
        tasks = {s.get("task"): s for s in steps(stages[name])}
        results = tasks["PublishTestResults@2"]
        assert results["inputs"]["testResultsFormat"] == "JUnit"
        assert results["inputs"]["searchFolder"].endswith("/reports")
        assert results["condition"] == "always()"
        reports = [s for s in steps(stages[name]) if s.get("task") == "PublishPipelineArtifact@1"
                   and s["inputs"]["targetPath"] == "reports"]
        assert reports and all(s["condition"] == "always()" for s in reports), name


def leaks(step: dict, secrets: set[str]) -> list[str]:
    """How one step could reveal a secret: expanded into its script or inputs, printed from its
    environment, or traced by a shell without ``set +x``. Empty when it cannot."""
    name = step.get("displayName", "?")
    found = []
    text = script(step)
    if used := {m["name"] for m in MACRO.finditer(text)} & secrets:
        found.append(f"{name}: {sorted(used)} expanded into the script text")
    for key, value in step.get("inputs", {}).items():
        if key != "inlineScript" and {m["name"] for m in MACRO.finditer(str(value))} & secrets:
            found.append(f"{name}: a secret in input {key}")
    env = step.get("env", {})
    secret_env = {k for k, v in env.items() if {m["name"] for m in MACRO.finditer(str(v))} & secrets}
    secret_env |= {"SYSTEM_ACCESSTOKEN"} & set(env)
    if secret_env and text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines[0] != "set +x" or "set -x" in text or "set -o xtrace" in text:
            found.append(f"{name}: a script with secrets must start with set +x and never trace")
        for line in lines:
            if re.match(r"(echo|printf|cat)\b", line) or "##vso[task.setvariable" in line:
                found += [f"{name}: prints ${var}" for var in secret_env if re.search(r"\$\{?" + var + r"\b", line)]
        if "printenv" in text or re.search(r"^\s*env\s*$", text, re.M):
            found.append(f"{name}: dumps the environment")
    return found


def test_secrets_come_from_a_key_vault_group(pipeline):
    assert any("group" in v for v in pipeline["variables"]), "no variable group"
    assert secret_names(pipeline) == {"pgha-admin-cidr", "pgha-subscription-id", "pgha-state-key"}


def test_no_secret_is_expanded_echoed_or_traced(pipeline):
    secrets = secret_names(pipeline)
    problems = [p for step in all_steps(pipeline) for p in leaks(step, secrets)]
    assert problems == []


def test_the_leak_check_catches_each_kind_of_leak():
    secrets = {"pgha-state-key"}
    env = {"STATE_KEY": "$(pgha-state-key)"}
    assert leaks({"bash": "set +x\necho $(pgha-state-key)"}, secrets)
    assert leaks({"bash": "set +x\necho \"key: $STATE_KEY\"", "env": env}, secrets)
    assert leaks({"bash": "set -euo pipefail\ntar c . | openssl enc -pass env:STATE_KEY", "env": env}, secrets)
    assert leaks({"bash": "set +x\nprintenv", "env": env}, secrets)
    assert leaks({"task": "X@1", "inputs": {"password": "$(pgha-state-key)"}}, secrets)
    assert not leaks({"bash": "set +x\nopenssl enc -pass env:STATE_KEY", "env": env}, secrets)


# ---------------------------------------------------------------- the templates


def test_every_template_is_used_and_the_state_blocks_stand_once():
    text = PIPELINE.read_text()
    used = {m for m in re.findall(r"template: (\S+)", text)}
    assert {f".azure-pipelines/{p.name}" for p in TEMPLATES.glob("*.yml")} == used
    assert "openssl enc" not in text and "PublishTestResults" not in text, "written once, in a template"


RESTORE = ["Download the deployer state", "Restore the deployer state"]
SAVE = ["Encrypt the deployer state for the next stages", "Publish the encrypted state",
        "Remove the deployer state from the agent"]


def run_at(names: list[str], run: list[str]) -> int:
    """Where ``run`` starts as consecutive steps in ``names``; -1 when it does not."""
    return next((i for i in range(len(names)) if names[i:i + len(run)] == run), -1)


def test_every_stack_job_restores_the_state_before_azure_and_saves_it_after(stages):
    for name in STAGES[1:]:
        names = [s.get("displayName") for s in steps(stages[name])]
        azure = [i for i, s in enumerate(steps(stages[name])) if s.get("task") == "AzureCLI@2"]
        restore, save = run_at(names, RESTORE), run_at(names, SAVE)
        assert (restore >= 0) == (name != "Provision") and (save >= 0) == (name != "Teardown"), name
        assert restore < min(azure) and (save < 0 or save > max(azure)), name
    teardown = {s.get("displayName"): s for s in steps(stages["Teardown"])}["Restore the deployer state"]
    assert teardown["continueOnError"] is True and 'only the tag sweep below runs."; exit 0' in script(teardown)
    configure = {s.get("displayName"): s for s in steps(stages["Configure"])}["Restore the deployer state"]
    assert configure["continueOnError"] is False and 'did Provision run?"; exit 1' in script(configure)


def test_the_expansion_refuses_what_azure_devops_refuses(tmp_path):
    """Negative controls: an undeclared, a missing or an unused parameter, and an expression naming
    none, each fail the expansion; a boolean stays a boolean."""
    (tmp_path / "t.yml").write_text(yaml.safe_dump({
        "parameters": [{"name": "flag", "type": "boolean", "default": False}, {"name": "text", "type": "string"}],
        "steps": [{"bash": "run ${{ parameters.text }}", "continueOnError": "${{ parameters.flag }}"}]}))
    including = tmp_path / "pipeline.yml"
    assert expand_steps([{"template": "t.yml", "parameters": {"text": "x", "flag": True}}], including) == [
        {"bash": "run x", "continueOnError": True}]
    text = [{"name": "text", "type": "string"}]
    for declared, body, given, error in (
            (text, "run ${{ parameters.text }}", {"text": "x", "other": 1}, "unexpected parameters"),
            (text, "run ${{ parameters.text }}", {}, "required parameters"),
            (text, "run ${{ parameters.txet }}", {"text": "x"}, "names no parameter"),
            (text, "run", {"text": "x"}, "never used")):
        (tmp_path / "t.yml").write_text(yaml.safe_dump({"parameters": declared, "steps": [{"bash": body}]}))
        with pytest.raises(TemplateError, match=error):
            expand_steps([{"template": "t.yml", "parameters": given}], including)


def test_every_job_sets_up_python_and_checks_the_agent_before_make(pipeline):
    """Only Validate set up Python: the stack jobs ran `make venv` with whatever python3 a
    self-hosted agent had (3.11+ needed) and assumed az, make, openssl and ssh."""
    for stage in pipeline["stages"]:
        for job in stage["jobs"]:
            names = [s.get("task") or s.get("displayName") or next(iter(s)) for s in job["steps"]]
            first = names[:4]
            assert first[:2] == ["checkout", "UsePythonVersion@0"] and job["steps"][0]["clean"] is True, stage["stage"]
            assert first[2] == "Check the agent's prerequisites" and first[3].startswith("Project virtualenv"), first
            check = script(job["steps"][2])
            assert "sys.version_info < (3, 11)" in check and "##vso[task.logissue type=error]" in check
            needed = {"make", "bicep"} | ({"az", "openssl", "ssh", "ssh-keyscan"} if stage["stage"] != "Validate" else set())
            assert needed <= set(re.search(r"for tool in (.*); do", check)[1].split()), stage["stage"]


def test_attach_proves_the_deployment_idempotent_after_it(stages):
    """Like Azure Verified Modules' deploy-twice tests: after attach, redeploying changes nothing;
    the drift check exits non-zero otherwise (tests/azure/test_azure_drift.py)."""
    texts = [script(s) for s in steps(stages["Attach"]) if s.get("task") == "AzureCLI@2"]
    attach = next(i for i, t in enumerate(texts) if "--from attach --until attach" in t)
    assert any("python -m deployer.targets.azure.drift --name \"$(stackName)\"" in t for t in texts[attach + 1:])


# ---------------------------------------------------------------- second review (issue 19), day two (issue 15)

#: Commands that delete Azure resources.
DELETES = re.compile(r"\bdeployer down\b|\baz (group|resource) delete\b")


def job_pool(stage: dict, job: dict) -> dict:
    return job.get("pool") or stage.get("pool") or {}


def unclean_self_hosted_jobs(pipeline) -> list[str]:
    """Jobs on a self-hosted pool (a ``name``, not a ``vmImage``) that do not clean their whole
    workspace first: such an agent keeps ``$(Pipeline.Workspace)`` (artifacts of older runs) and
    ``.venv`` between runs."""
    return [f"{stage['stage']}.{job['job']}" for stage in pipeline["stages"] for job in stage["jobs"]
            if "vmImage" not in job_pool(stage, job) and (job.get("workspace") or {}).get("clean") != "all"]


def deletions_that_can_be_skipped(pipeline) -> list[str]:
    """Steps that delete resources but run only when every step before them succeeded (no
    ``condition`` starting with ``always()``), and the jobs holding them that a cancel skips."""
    found = []
    for stage in pipeline["stages"]:
        for job in stage["jobs"]:
            deleting = [s for s in job["steps"] if DELETES.search(script(s))]
            found += [f"{stage['stage']}: step {s.get('displayName')!r} skipped after an earlier failure"
                      for s in deleting if not str(s.get("condition", "")).replace(" ", "").startswith("always()")]
            if deleting and not str(job.get("condition", "")).replace(" ", "").startswith("always()"):
                found.append(f"{stage['stage']}: job {job['job']} skipped on a cancelled run")
    return found


def planted(pipeline: dict, stage: str, change) -> dict:
    """A deep copy of ``pipeline`` with ``change(job)`` applied to the first job of ``stage``."""
    copy = yaml.safe_load(yaml.safe_dump(pipeline))
    change(next(s for s in copy["stages"] if s["stage"] == stage)["jobs"][0])
    return copy


def test_every_step_that_deletes_resources_runs_whatever_failed_before_it(pipeline, stages):
    """Issue 19, defect 1: Teardown ran `deployer down` and the `az group delete` sweep in one step
    after `make venv`; a failed `make venv` skipped both and left the stack running and billed. The
    sweep needs only az: its own step; every deleting step and the Teardown job itself run always(),
    and a cancel leaves the job time for a resource group deletion."""
    assert deletions_that_can_be_skipped(pipeline) == []
    job = stages["Teardown"]["jobs"][0]
    assert int(job["cancelTimeoutInMinutes"]) >= 30, "az group delete takes minutes"
    down, sweep = ([s for s in job["steps"] if pattern in script(s)] for pattern in (".venv/bin/deployer down", "az group delete"))
    assert len(down) == len(sweep) == 1 and down[0] is not sweep[0], "the sweep is a step of its own"
    assert job["steps"].index(down[0]) < job["steps"].index(sweep[0])
    assert ".venv" not in script(sweep[0]) and sweep[0]["task"] == "AzureCLI@2", "the sweep needs az only"


def test_the_deletion_check_catches_a_skippable_deletion(pipeline):
    """Negative controls: a deleting step without always(), and a Teardown job without it."""
    def step_without_always(job):
        next(s for s in job["steps"] if "az group delete" in script(s)).pop("condition")
    assert any("skipped after an earlier failure" in p for p in deletions_that_can_be_skipped(
        planted(pipeline, "Teardown", step_without_always)))
    assert any("skipped on a cancelled run" in p for p in deletions_that_can_be_skipped(
        planted(pipeline, "Teardown", lambda job: job.pop("condition"))))


def test_every_job_on_a_self_hosted_agent_cleans_its_workspace(pipeline):
    """Issue 19, defect 2: a self-hosted agent kept `$(Pipeline.Workspace)/state-*` of older runs,
    and the restore step took the newest directory by name, another run's stack."""
    assert unclean_self_hosted_jobs(pipeline) == []
    assert unclean_self_hosted_jobs(planted(pipeline, "Configure", lambda job: job.pop("workspace"))) == [
        "Configure.configure"], "negative control"


def test_the_state_is_this_runs_by_its_build_id(stages):
    """Issue 19, defect 2: the state artifacts carry the build id, and the restore picks among this
    run's only."""
    publish = next(s for s in steps(stages["Provision"]) if s.get("displayName") == "Publish the encrypted state")
    assert publish["inputs"]["artifact"].startswith("state-$(Build.BuildId)-")
    download, restore = (next(s for s in steps(stages["Configure"]) if s.get("displayName") == name) for name in RESTORE)
    assert download["patterns"].startswith("state-$(Build.BuildId)-")
    assert '"$(Pipeline.Workspace)"/state-$(Build.BuildId)-*' in script(restore)


def test_bicep_is_a_standalone_cli_the_agent_must_have(pipeline):
    """Issue 19, defect 5: AzureCLI@2 gives each step its own AZURE_CONFIG_DIR, so `az bicep install`
    in one step is unseen by the next and az downloads Bicep again at every compile. Every job's
    agent check requires `bicep` on PATH, no step runs `az bicep`, and the agent image names it."""
    for stage in pipeline["stages"]:
        check = script(stage["jobs"][0]["steps"][2])
        assert "bicep" in re.search(r"for tool in (.*); do", check)[1].split(), stage["stage"]
    assert not [s.get("displayName") for s in all_steps(pipeline) if re.search(r"\baz bicep (build|lint|install)", script(s))]
    agent_image = (REPO / "docs" / "azure.md").read_text().partition("### Agent image")[2].partition("\n## ")[0]
    assert "standalone `bicep`" in agent_image and "AZURE_CONFIG_DIR" in agent_image


def test_pull_requests_on_azure_repos_are_validated_by_a_branch_policy(pipeline):
    """Issue 19, defect 6: a YAML `pr:` trigger does nothing on Azure Repos (GitHub and Bitbucket
    only), yet the docs promised "pull requests run Validate only". The one-time setup sets up a
    build validation policy; the trigger stays, for GitHub-hosted copies."""
    assert pipeline["pr"]["branches"]["include"] == ["main"]
    assert re.search(r"^pr:  # .*GitHub.*Bitbucket", PIPELINE.read_text(), re.M), "say where `pr:` applies"
    setup = (REPO / "docs" / "azure.md").read_text().partition("One-time setup:")[2].partition("### Agent image")[0]
    assert "Build validation" in setup and "Azure Repos" in setup


FAKE_DEPLOYER = """#!/bin/sh
# `deployer` as the pipeline calls it: each call logged; `up` of a plan with a replace refused without --replace.
echo "$*" >> "$CALLS"
case "$*" in
  *--what-if*) echo "Plan: 1 change(s)"; echo "  replace   network.subnet_cidr" ;;
  *--replace*) echo "Replacing stack" ;;
  *) if [ "$PLAN" = replace ]; then echo "error: refused: network.subnet_cidr forces replacement" >&2; exit 2; fi ;;
esac
"""


def run_step(step: dict, tmp_path: Path, plan: str) -> tuple[int, list[str]]:
    """Run an AzureCLI@2 step's script with bash, as the agent would: pipeline macros filled in, a fake
    ``az`` and ``.venv/bin/deployer`` (``FAKE_DEPLOYER``, facing a plan that holds a ``replace`` or
    not); its exit code and the deployer calls it made."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    for path, body in ((tmp_path / "bin" / "az", "#!/bin/sh\necho sub-id\n"),
                       (tmp_path / ".venv" / "bin" / "deployer", FAKE_DEPLOYER)):
        path.write_text(body)
        path.chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    text = MACRO.sub(lambda m: {"stackName": "ci7", "specFile": "/tmp/spec.yaml"}[m["name"]], script(step))
    done = subprocess.run(["bash", "-c", text], cwd=tmp_path, capture_output=True, text=True, env={
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "CALLS": str(calls), "PLAN": plan})
    return done.returncode, calls.read_text().splitlines()


@pytest.mark.parametrize("allow, plan, code, up", [
    (False, "in place", 0, "--until provision"),
    (False, "replace", 2, "--until provision"),
    (True, "replace", 0, "--until provision --replace")])
def test_provision_shows_the_plan_and_replaces_only_when_the_run_allows_it(tmp_path, allow, plan, code, up):
    """Issue 15, item 8: on a deployed stack `deployer up` is a change. The deploy step prints the plan
    (`--what-if`) first, then applies it; a plan with a replace fails the step (exit 2) unless the
    run's `allowReplace` parameter (default false) passes `--replace`. The rolling apply is part of
    configure (`--from configure --until configure`)."""
    param = next(p for p in yaml.safe_load(PIPELINE.read_text())["parameters"] if p["name"] == "allowReplace")
    assert (param["type"], param["default"]) == ("boolean", False)
    stages = {s["stage"]: s for s in expand(PIPELINE, {"allowReplace": allow} if allow else None)["stages"]}
    step, = (s for s in steps(stages["Provision"]) if "--until provision" in script(s))
    returned, calls = run_step(step, tmp_path, plan)
    base = 'up --target azure --name ci7 --spec /tmp/spec.yaml'
    assert (returned, calls) == (code, [f"{base} --what-if", f"{base} {up}"])


def history_problems(chaos: list[dict]) -> list[str]:
    """How the Chaos job fails to keep ``reports/history.jsonl`` between nightly runs: it must
    download the newest tagged ``drill-history`` (failed runs too) into reports/ before the drills,
    and publish it and tag the run after them, also after a failure."""
    names = [s.get("displayName", "") for s in chaos]
    drills = names.index("pytest -m chaos (drills)")
    download = [(i, s) for i, s in enumerate(chaos) if s.get("task") == "DownloadPipelineArtifact@2"]
    publish = [(i, s) for i, s in enumerate(chaos) if s.get("task") == "PublishPipelineArtifact@1"
               and s["inputs"].get("artifact") == "drill-history"]
    tag = [i for i, s in enumerate(chaos) if "##vso[build.addbuildtag]drill-history" in script(s)]
    problems = []
    if not download or download[0][0] > drills:
        problems.append("the history is not downloaded before the drills")
    elif {k: download[0][1]["inputs"].get(k) for k in ("artifact", "tags", "allowFailedBuilds")} != {
            "artifact": "drill-history", "tags": "drill-history", "allowFailedBuilds": True}:
        problems.append(f"the download is not the newest tagged drill-history: {download[0][1]['inputs']}")
    elif not download[0][1]["inputs"]["path"].endswith("/reports"):
        problems.append("the history is not downloaded into reports/")
    if not publish or publish[0][0] < drills or not publish[0][1]["inputs"]["targetPath"].endswith("reports/history.jsonl"):
        problems.append("reports/history.jsonl is not published after the drills")
    if not tag or tag[0] < drills:
        problems.append("the run is not tagged drill-history after the drills")
    problems += [f"{names[i]} is skipped after a failure" for i in [*(i for i, _ in publish), *tag]
                 if "always()" not in chaos[i].get("condition", "")]
    return problems


def test_the_chaos_stage_keeps_the_drills_history_between_nightly_runs(stages):
    assert history_problems(steps(stages["Chaos"])) == []


def test_the_history_check_finds_a_history_not_carried_over(stages):
    """Negative control: without the download the history would restart every night; published
    only on success, a failed night's figures would be lost."""
    chaos = steps(stages["Chaos"])
    without_download = [s for s in chaos if s.get("task") != "DownloadPipelineArtifact@2"]
    assert history_problems(without_download) == ["the history is not downloaded before the drills"]
    only_on_success = [{**s, "condition": "succeeded()"} if s.get("inputs", {}).get("artifact") == "drill-history"
                       and s.get("task") == "PublishPipelineArtifact@1" else s for s in chaos]
    assert history_problems(only_on_success) == [
        "Publish the drills' history for the next nightly run is skipped after a failure"]
