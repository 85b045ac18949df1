"""LMDB storage, the only package that knows LMDB, its databases and key layouts: the
environment, the single writer with group commit, typed transactions and the object store."""

from govc.storage.env import Storage, StorageConfig
from govc.storage.tables import Entry
from govc.storage.txn import Txn
from govc.storage.writer import Writer

__all__ = ["Entry", "Storage", "StorageConfig", "Txn", "Writer"]
