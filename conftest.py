"""Root pytest configuration: the one option group and the plugins every suite shares.

Options (group ``pgha``): ``--stack NAME`` attaches the suites to the deployed stack NAME;
``--deploy`` deploys it first (``deployer up``) and tears it down at the end of the session.
"""

pytest_plugins = ["suites.fixtures", "pytester"]  # pytester: the unit tests of the suites' own hooks


def pytest_addoption(parser):
    group = parser.getgroup("pgha", "HA PostgreSQL stack")
    group.addoption("--stack", default=None, help="name of the deployed stack to check (default: the spec's name)")
    group.addoption("--spec", default=None, help="stack spec file for --deploy (default: stack.yaml)")
    group.addoption("--target", default="local", help="target for --deploy (default: local)")
    group.addoption("--deploy", action="store_true", help="deploy the stack first and tear it down afterwards")
