"""The azure target: Bicep through ARM deployments, read-backs and faults through the Azure SDK."""
