"""Who the Azure target acts as: the subscription and the credential, read from the environment once.

On a laptop ``DefaultAzureCredential`` (``az login``, environment variables, managed identity); in
Azure DevOps ``AzurePipelinesCredential`` (workload identity federation, no client secret), chosen
when the pipeline's variables are present. Nothing here talks to Azure.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from deployer.targets.base import MissingPrerequisite

ARM_SCOPE = "https://management.azure.com/.default"
#: Set by AzureCLI@2 / AzurePowerShell@5 for a workload-identity service connection.
PIPELINE_VARS = ("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "AZURESUBSCRIPTION_CLIENT_ID",
                 "AZURESUBSCRIPTION_TENANT_ID")


@dataclasses.dataclass(frozen=True)
class AzureEnv:
    """The environment variables the Azure target reads (the only place it reads any)."""

    subscription_id: str | None
    oidc_request_uri: str | None
    pipeline: dict[str, str]
    system_access_token: str | None = dataclasses.field(default=None, repr=False)
    #: ``PGHA_AZURE_MANAGED_IDENTITY=1``: also try the VM's managed identity (an Azure-hosted runner).
    managed_identity: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> AzureEnv:
        env = os.environ if environ is None else environ
        return cls(subscription_id=env.get("AZURE_SUBSCRIPTION_ID") or None,
                   oidc_request_uri=env.get("SYSTEM_OIDCREQUESTURI") or None,
                   pipeline={k: env[k] for k in PIPELINE_VARS if env.get(k)},
                   system_access_token=env.get("SYSTEM_ACCESSTOKEN") or None,
                   managed_identity=env.get("PGHA_AZURE_MANAGED_IDENTITY") == "1")

    @property
    def in_pipeline(self) -> bool:
        """True inside an Azure DevOps job whose step has a workload-identity service connection."""
        return bool(self.oidc_request_uri and self.pipeline)

    def credential(self):
        """``AzurePipelinesCredential`` in a pipeline, ``DefaultAzureCredential`` elsewhere.

        Raises MissingPrerequisite when the pipeline half-configures federation (a variable or
        ``SYSTEM_ACCESSTOKEN`` missing), naming what to add to the step.
        """
        from azure.identity import AzurePipelinesCredential, DefaultAzureCredential

        if not self.in_pipeline:
            # Managed identity probes the instance metadata address; only where asked for.
            return DefaultAzureCredential(exclude_managed_identity_credential=not self.managed_identity)
        missing = [k for k in PIPELINE_VARS if k not in self.pipeline]
        if not self.system_access_token:
            missing.append("SYSTEM_ACCESSTOKEN")
        if missing:
            raise MissingPrerequisite(
                f"Azure DevOps workload identity is half set up: {', '.join(missing)} missing. Run the "
                "step with AzureCLI@2 and a workload-identity service connection, and map "
                "SYSTEM_ACCESSTOKEN: $(System.AccessToken) into its env.")
        return AzurePipelinesCredential(
            tenant_id=self.pipeline["AZURESUBSCRIPTION_TENANT_ID"],
            client_id=self.pipeline["AZURESUBSCRIPTION_CLIENT_ID"],
            service_connection_id=self.pipeline["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"],
            system_access_token=self.system_access_token)
