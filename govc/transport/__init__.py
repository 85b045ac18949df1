"""The doors: bindings of the operations in `govc.services` to a wire protocol (gRPC over
grpclib today). Only this package and the client know grpclib."""
