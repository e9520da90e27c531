"""Several nodes: the Redis registry of nodes and room leases, messages between nodes,
room counts across nodes, and `serve --workers N` node processes."""
