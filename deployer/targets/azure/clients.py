"""The Azure SDK clients of one subscription, built on first use with one credential and the same
keyword arguments (a test passes ``transport=``, ``polling_interval=0``, ``retry_total=0``)."""

from __future__ import annotations

import functools


class Clients:
    """The management clients the target uses: resources, deployments, network, compute."""

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


def rest(model) -> dict:
    """An SDK result as the REST API's JSON (``{"properties": {...}}``, camelCase names)."""
    return model.as_dict()
