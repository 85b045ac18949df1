"""Version-control RPCs: files (AddFile, WriteFile, ReadFile, RemoveFile, MoveFile), commits
(Commit, GetCommit, ListCommits), branches (CreateBranch, ListBranches, DeleteBranch,
CheckoutBranch, MergeBranch, AbortMerge), tags (CreateTag, ListTags, DeleteTag) and
GetStatus."""

import datetime
from collections.abc import Callable, Iterable

from generated.google.protobuf import Empty
from generated.govc import (
    AbortMergeRequest,
    AddFileRequest,
    AddFileResponse,
    Branch,
    CheckoutBranchRequest,
    CommitRequest,
    CommitResponse,
    CreateBranchRequest,
    CreateBranchResponse,
    CreateTagRequest,
    DeleteBranchRequest,
    DeleteTagRequest,
    FileChange,
    GetCommitRequest,
    GetCommitResponse,
    GetStatusRequest,
    GetStatusResponse,
    ListBranchesRequest,
    ListBranchesResponse,
    ListCommitsRequest,
    ListCommitsResponse,
    ListTagsRequest,
    ListTagsResponse,
    MergeBranchRequest,
    MergeBranchResponse,
    MergeConflict,
    MoveFileRequest,
    ReadFileRequest,
    ReadFileResponse,
    RemoveFileRequest,
    Tag,
    WriteFileRequest,
    WriteFileResponse,
)
from govc.core import versioncontrol
from govc.core.gitformat import parse_author, require_message, validate_object_id
from govc.core.merge import Conflict, Strategy
from govc.core.objects import PreparedObject
from govc.core.validation import validate_branch_name, validate_path, validate_repo_id
from govc.core.versioncontrol import CommitInfo, TagInfo, VersionControl
from govc.errors import InvalidArgument
from govc.services.access import Access
from govc.services.blobs import prepare_blob
from govc.services.convert import timestamp_from_us

MAX_FILES_IN_COMMIT = 10_000
STRATEGIES = {"": Strategy.ORT, "ort": Strategy.ORT} | {
    s.value: s for s in Strategy if s is not Strategy.ORT
}


def _seconds(t: int) -> datetime.datetime:
    return timestamp_from_us(t * 1_000_000)


def conflict_message(conflict: Conflict) -> MergeConflict:
    return MergeConflict(
        path=conflict.path,
        base_hash=conflict.base[1].hex() if conflict.base else "",
        ours_hash=conflict.ours[1].hex() if conflict.ours else "",
        theirs_hash=conflict.theirs[1].hex() if conflict.theirs else "",
        merged=conflict.merged,
    )


def tag_message(info: TagInfo) -> Tag:
    tag = info.tag
    return Tag(
        name=info.name,
        commit_hash=info.commit_id,
        tag_hash=info.target if tag else "",
        message=tag.message.rstrip("\n") if tag else "",
        tagger=tag.tagger.identity if tag and tag.tagger else "",
        timestamp=_seconds(tag.tagger.time) if tag and tag.tagger else None,
    )


def commit_message(info: CommitInfo) -> GetCommitResponse:
    commit = info.commit
    return GetCommitResponse(
        hash=info.id,
        message=commit.message.rstrip("\n"),
        author=commit.author.identity,
        timestamp=_seconds(commit.author.time),
        parent_hashes=list(commit.parents),
        changes=[
            FileChange(path=path, type=kind, hash=oid.hex())
            for path, kind, oid in info.changes or []
        ],
    )


class VersioningService:
    def __init__(
        self,
        access: Access,
        vc: VersionControl,
        changed: Callable[[str, Iterable[str] | None], None],
    ) -> None:
        self._access = access
        self._vc = vc
        # Told, once durable and before the reply, that a repository's files may have changed
        # (the search indexer: read-your-writes).
        self._changed = changed

    # ---- files ----

    async def add_file(self, message: AddFileRequest) -> AddFileResponse:
        oid, size = await self._write(message, stage=True)
        return AddFileResponse(hash=oid, size=size)

    async def write_file(self, message: WriteFileRequest) -> WriteFileResponse:
        oid, size = await self._write(message, stage=False)
        return WriteFileResponse(hash=oid, size=size)

    async def _write(
        self, message: AddFileRequest | WriteFileRequest, stage: bool
    ) -> tuple[str, int]:
        """The file's blob id and size: new `content`, or the stored blob `blob_hash` names."""
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        path = validate_path(message.path, "path")
        blob: PreparedObject | bytes
        if message.blob_hash:
            if message.content:
                raise InvalidArgument("set content or blob_hash, not both")
            blob = validate_object_id(message.blob_hash, "blob_hash")
        else:
            blob = await prepare_blob(self._access, message.content)
        entry = await self._access.write(
            repo_id,
            lambda txn: self._vc.write_file(txn, repo_id, path, blob, stage),
            then=lambda: self._changed(repo_id, [path]),
        )
        return entry.oid.hex(), entry.size

    async def read_file(self, message: ReadFileRequest) -> ReadFileResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        path = validate_path(message.path, "path")
        found = await self._access.read(
            repo_id, lambda txn: self._vc.read_file(txn, repo_id, path, message.commit)
        )
        return ReadFileResponse(
            content=found.content,
            hash=found.oid.hex(),
            size=len(found.content),
            last_modified=timestamp_from_us(found.modified_us),
        )

    async def remove_file(self, message: RemoveFileRequest) -> Empty:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        path = validate_path(message.path, "path")
        await self._access.write(
            repo_id,
            lambda txn: self._vc.remove_file(txn, repo_id, path),
            then=lambda: self._changed(repo_id, [path]),
        )
        return Empty()

    async def move_file(self, message: MoveFileRequest) -> Empty:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        source = validate_path(message.from_path, "from_path")
        target = validate_path(message.to_path, "to_path")
        await self._access.write(
            repo_id,
            lambda txn: self._vc.move_file(txn, repo_id, source, target),
            then=lambda: self._changed(repo_id, [source, target]),
        )
        return Empty()

    # ---- commits ----

    async def commit(self, message: CommitRequest) -> CommitResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        author = parse_author(message.author, *self._vc.identity)
        if len(message.files) > MAX_FILES_IN_COMMIT:
            raise InvalidArgument(f"files lists more than {MAX_FILES_IN_COMMIT} paths")
        files = [validate_path(p, "files") for p in message.files]
        require_message(message.message)  # refused before it costs a write
        info = await self._access.write(
            repo_id,
            lambda txn: self._vc.commit(txn, repo_id, message.message, author, files),
            then=lambda: self._changed(repo_id, None),
        )
        return CommitResponse(
            hash=info.id,
            message=info.commit.message.rstrip("\n"),
            author=info.commit.author.identity,
            timestamp=_seconds(info.commit.author.time),
        )

    async def get_commit(self, message: GetCommitRequest) -> GetCommitResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        if not message.hash:
            raise InvalidArgument("hash is required")
        info = await self._access.read(
            repo_id, lambda txn: self._vc.get_commit(txn, repo_id, message.hash)
        )
        return commit_message(info)

    async def list_commits(self, message: ListCommitsRequest) -> ListCommitsResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        if message.offset < 0:
            raise InvalidArgument(f"offset must not be negative, got {message.offset}")
        commits, total = await self._access.read(
            repo_id,
            lambda txn: self._vc.list_commits(
                txn, repo_id, message.branch, message.author, message.limit, message.offset
            ),
        )
        return ListCommitsResponse(commits=[commit_message(c) for c in commits], total=total)

    # ---- branches ----

    async def create_branch(self, message: CreateBranchRequest) -> CreateBranchResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        name = validate_branch_name(message.name, "name")
        commit_id = await self._access.write(
            repo_id, lambda txn: self._vc.create_branch(txn, repo_id, name, message.from_commit)
        )
        return CreateBranchResponse(name=name, commit_hash=commit_id)

    async def list_branches(self, message: ListBranchesRequest) -> ListBranchesResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        branches, current = await self._access.read(
            repo_id, lambda txn: self._vc.list_branches(txn, repo_id)
        )
        return ListBranchesResponse(
            branches=[
                Branch(
                    name=b.name,
                    commit_hash=b.commit_id,
                    last_commit=_seconds(b.commit.committer.time),
                    author=b.commit.author.identity,
                )
                for b in branches
            ],
            current_branch=current,
        )

    async def delete_branch(self, message: DeleteBranchRequest) -> Empty:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        name = validate_branch_name(message.name, "name")
        await self._access.write(repo_id, lambda txn: self._vc.delete_branch(txn, repo_id, name))
        return Empty()

    async def checkout_branch(self, message: CheckoutBranchRequest) -> Empty:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        name = validate_branch_name(message.name, "name")
        await self._access.write(
            repo_id,
            lambda txn: self._vc.checkout(txn, repo_id, name),
            then=lambda: self._changed(repo_id, None),
        )
        return Empty()

    async def merge_branch(self, message: MergeBranchRequest) -> MergeBranchResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        source = validate_branch_name(message.source_branch, "source_branch")
        target = (
            validate_branch_name(message.target_branch, "target_branch")
            if message.target_branch
            else ""
        )
        strategy = STRATEGIES.get(message.strategy)
        if strategy is None:
            raise InvalidArgument(
                f"strategy {message.strategy!r:.40} is not one of ort, ours, theirs, union"
            )
        try:
            result = await self._access.write(
                repo_id,
                lambda txn: self._vc.merge(
                    txn,
                    repo_id,
                    source,
                    target,
                    message.message,
                    strategy,
                    message.leave_conflicts,
                ),
                then=lambda: self._changed(repo_id, None),
            )
        except versioncontrol.MergeConflict as conflict:  # an answer; nothing was written
            conflicts = conflict.conflicts
        else:
            conflicts = result.conflicts
            if result.commit_id:
                return MergeBranchResponse(commit_hash=result.commit_id, conflicts=False)
        # (A conflict without a path, such as a directory renamed two ways, lists no file.)
        return MergeBranchResponse(
            conflicts=True,
            conflict_files=[c.path for c in conflicts],
            conflicts_detail=[conflict_message(c) for c in conflicts],
        )

    async def abort_merge(self, message: AbortMergeRequest) -> Empty:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        await self._access.write(
            repo_id,
            lambda txn: self._vc.abort_merge(txn, repo_id),
            then=lambda: self._changed(repo_id, None),
        )
        return Empty()

    # ---- tags ----

    async def create_tag(self, message: CreateTagRequest) -> Tag:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        name = validate_branch_name(message.name, "name")
        tagger = (
            parse_author(message.tagger, *self._vc.identity, field="tagger")
            if message.tagger
            else None
        )
        info = await self._access.write(
            repo_id,
            lambda txn: self._vc.create_tag(
                txn, repo_id, name, message.target, message.message, tagger
            ),
        )
        return tag_message(info)

    async def list_tags(self, message: ListTagsRequest) -> ListTagsResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        tags = await self._access.read(repo_id, lambda txn: self._vc.list_tags(txn, repo_id))
        return ListTagsResponse(tags=[tag_message(t) for t in tags])

    async def delete_tag(self, message: DeleteTagRequest) -> Empty:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        name = validate_branch_name(message.name, "name")
        await self._access.write(repo_id, lambda txn: self._vc.delete_tag(txn, repo_id, name))
        return Empty()

    # ---- status ----

    async def get_status(self, message: GetStatusRequest) -> GetStatusResponse:
        repo_id = validate_repo_id(message.repository_id, "repository_id")
        status = await self._access.read(repo_id, lambda txn: self._vc.status(txn, repo_id))
        return GetStatusResponse(
            repository_id=repo_id,
            current_branch=status.branch,
            staged_files=status.staged,
            unstaged_files=status.unstaged,
            untracked_files=status.untracked,
            status_entries=[f"{code} {path}" for code, path in status.entries],
        )
