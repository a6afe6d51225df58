"""The durable ledger: runs, events, leases, tool calls, approvals, deliveries."""
