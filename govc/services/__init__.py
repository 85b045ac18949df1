"""RPC handlers, one module per RPC group, and the one place that maps errors to status codes.

Handlers are transport-agnostic: they take and return betterproto2 messages and raise domain
errors. `grpc.py` adapts them to grpclib.
"""
