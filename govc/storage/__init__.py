"""LMDB storage: the environment, the single writer with group commit, the object store."""

from govc.storage.env import Storage, StorageConfig

__all__ = ["Storage", "StorageConfig"]
