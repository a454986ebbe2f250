"""The gateway: route table, key auth, policies, forwarding, usage recording, docs."""
