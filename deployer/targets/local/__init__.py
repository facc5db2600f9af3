"""The local target: systemd-nspawn VMs, nftables NSG and an HAProxy load balancer on one machine."""
