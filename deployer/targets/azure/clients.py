"""The Azure SDK clients of one subscription, built on first use with one credential and the same
keyword arguments (a test passes ``transport=``, ``polling_interval=0``, ``retry_total=0``), and
``rest``: the one place that turns what they return into the REST API's JSON.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping

from deployer.targets.base import TargetError

#: The first release of each management SDK whose models are the REST JSON ("hybrid" models,
#: ``MutableMapping``s); pyproject.toml's floors. Older releases return msrest models.
HYBRID_SINCE = {"azure-mgmt-network": "31", "azure-mgmt-compute": "38", "azure-mgmt-resource": "26",
                "azure-mgmt-resource-deployments": "1", "azure-mgmt-storage": "25"}


class Clients:
    """The management clients the target uses: resources, deployments, network, compute, storage."""

    def __init__(self, credential, subscription_id: str, kwargs: dict):
        self.credential, self.subscription_id, self.kwargs = credential, subscription_id, kwargs

    def _make(self, cls):
        return cls(self.credential, self.subscription_id, **self.kwargs)

    @functools.cached_property
    def resources(self):
        from azure.mgmt.resource.resources import ResourceManagementClient
        return self._make(ResourceManagementClient)

    @functools.cached_property
    def deployments(self):
        from azure.mgmt.resource.deployments import DeploymentsMgmtClient
        return self._make(DeploymentsMgmtClient).deployments

    @functools.cached_property
    def network(self):
        from azure.mgmt.network import NetworkManagementClient
        return self._make(NetworkManagementClient)

    @functools.cached_property
    def compute(self):
        from azure.mgmt.compute import ComputeManagementClient
        return self._make(ComputeManagementClient)

    @functools.cached_property
    def storage(self):
        """The storage client: the backup repository's account keys (``backup``)."""
        from azure.mgmt.storage import StorageManagementClient
        return self._make(StorageManagementClient)


def rest(model) -> dict:
    """An SDK result as the REST API's JSON (``{"properties": {...}}``, camelCase names), which every
    reader of this target expects. TargetError for an msrest model of an older SDK release: its
    ``as_dict()`` is snake_case and flattened, where every lookup finds nothing, so read-backs
    would be silently empty and a fault would rewrite an NSG without its rules."""
    if isinstance(model, Mapping):
        return model.as_dict()
    package = "-".join(type(model).__module__.split(".")[:3])
    try:
        installed = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        installed = "?"
    raise TargetError(f"{package} {installed} returns msrest models, not the REST JSON this target reads: "
                      f"install {package}>={HYBRID_SINCE.get(package, '?')} (pyproject.toml's floor, which "
                      "`make venv` installs)")
