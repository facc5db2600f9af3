"""The ``azure`` target (registered as ``Target.registry["azure"]`` on import)."""

from deployer.targets.azure.target import AzureTarget

__all__ = ["AzureTarget"]
