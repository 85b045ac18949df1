"""The operations: one module per RPC group, and `handlers.Handlers`, the one table from every
RPC to its handler.

Handlers are transport-agnostic: they take and return betterproto2 messages (or async
iterators of them), validate, and raise domain errors (`govc.errors`); the doors in
`govc.transport` map those to status codes. They reach storage only through `access.Access`,
which decides what runs off the event loop.
"""
