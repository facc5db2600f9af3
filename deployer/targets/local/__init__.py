"""The local target: systemd-nspawn VMs, nftables NSG and an HAProxy load balancer on one machine."""

from deployer.targets.local.target import LocalTarget

__all__ = ["LocalTarget"]
