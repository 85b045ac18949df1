"""The protobuf wire fast path for the hot messages, shared by the server and the client."""
