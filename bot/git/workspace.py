"""The git side: a mirror of the repo in a cache dir, read access for snapshots, and worktrees
in which changes are committed and pushed. The user's own working copy is never touched.

Who calls it: `bot.service` (reads and pushes) and `bot.forge.local` (merges).
"""
from __future__ import annotations

import base64
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Mapping, Sequence

import git
from git.exc import BadName, GitCommandError
from git.objects.fun import tree_entries_from_data
from gitdb import IStream, LooseObjectDB
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from bot.git.checks import CheckReport, run_checks
from bot.git.render import MAX_INPUT_BYTES, InputTooLarge, RenderCache, Renderer, UnsafeLink
from commands.model import ChangePlan, CommandError, FileEdit
from commands.repo import RepoSnapshot
from commands.yamledit import rebase_edit

log = logging.getLogger(__name__)

_ZERO = "0" * 40
# Every git call that talks to origin is bounded: curl gives up below 1 KB/s for 30 s, ssh on a dead
# connection, and whatever is left (an origin that accepts and never answers) is killed at the hard
# limit. The error then takes the outage path (OriginUnavailable): retried later, user told once.
GIT_NETWORK_TIMEOUT_SECONDS = 300.0
GIT_LOW_SPEED_BYTES = 1000
GIT_LOW_SPEED_SECONDS = 30
_TREE = 0o40000
BOT_IDENTITY = {
    "GIT_AUTHOR_NAME": "fluxbot",
    "GIT_AUTHOR_EMAIL": "fluxbot@users.noreply.local",
    "GIT_COMMITTER_NAME": "fluxbot",
    "GIT_COMMITTER_EMAIL": "fluxbot@users.noreply.local",
}


class WorkspaceError(Exception):
    """A git operation failed in a way the user should hear about (message is safe to show)."""


@dataclass(frozen=True)
class Pushed:
    commit: str
    report: CheckReport


class MergeConflict(WorkspaceError):
    """The branch conflicts with the default branch; `files` are the conflicting paths."""

    def __init__(self, message: str, base: str, files: list[str]) -> None:
        super().__init__(message)
        self.base, self.files = base, files


class OriginUnavailable(WorkspaceError):
    """The git remote cannot be reached right now; the same request can work later."""


class _PushRejected(WorkspaceError):
    """A push failed; it is tried again a few times, since the remote may just be busy."""


class _PushUnreachable(_PushRejected, OriginUnavailable):
    pass


class Listings:
    """File listings of recent commits (path -> blob id), shared by all readers of a workspace.

    A commit's tree never changes, so each is listed once; consecutive requests on an unchanged
    main cost no `ls-tree`. Bounded, oldest out first.
    """

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._items: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def get(self, commit: str) -> dict[str, str] | None:
        with self._lock:
            return self._items.get(commit)

    def put(self, commit: str, listing: dict[str, str]) -> None:
        with self._lock:
            self._items[commit] = listing
            while len(self._items) > self._size:
                del self._items[next(iter(self._items))]


def _is_object_id(ref: str) -> bool:
    return len(ref) == 40 and all(c in "0123456789abcdef" for c in ref)


class GitReader:
    """`commands.repo.TreeReader` over the mirror: blobs come through one `cat-file --batch`."""

    def __init__(self, repo: git.Repo, head: str, listings: Listings | None = None) -> None:
        self._repo = repo
        self.head = head
        self._trees = listings if listings is not None else Listings()
        self._blobs: dict[str, bytes] = {}

    def _tree(self, ref: str) -> dict[str, str]:
        tree = self._trees.get(ref)
        if tree is None:
            listing = self._repo.git.ls_tree("-r", "-z", "--full-tree", ref)
            tree = {}
            for entry in filter(None, listing.split("\0")):
                meta, path = entry.split("\t", 1)
                _mode, kind, sha = meta.split()
                if kind == "blob":
                    tree[path] = sha
            # Only commit ids name a fixed tree; a branch or tag name is listed afresh each time.
            if _is_object_id(ref):
                self._trees.put(ref, tree)
        return tree

    def list_files(self, ref: str, prefix: str) -> list[str]:
        return sorted(p for p in self._tree(ref) if p.startswith(prefix))

    def derive(self, commit: str, changes: Mapping[str, str | None]) -> GitReader:
        """A reader at `commit`, made from this head by `changes` (path -> blob id, None: deleted).

        Its file listing is derived, not listed again: the commit was just written from it.
        """
        tree = {path: sha for path, sha in self._tree(self.head).items() if path not in changes}
        tree.update({path: sha for path, sha in changes.items() if sha is not None})
        reader = GitReader(self._repo, commit, self._trees)
        reader._trees.put(commit, tree)
        reader._blobs = self._blobs
        return reader

    def read(self, ref: str, path: str) -> bytes | None:
        sha = self._tree(ref).get(path)
        return self._blob(sha) if sha else None

    def _blob(self, sha: str) -> bytes:
        # A snapshot reads some files more than once (each lookup filters by content first).
        blob = self._blobs.get(sha)
        if blob is None:
            blob = self._blobs[sha] = self._repo.odb.stream(bytes.fromhex(sha)).read()
        return blob

    def tags(self) -> dict[str, str]:
        out = self._repo.git.for_each_ref("refs/tags", format="%(refname:strip=2) %(objectname) %(*objectname)")
        tags = {}
        for line in out.splitlines():
            name, obj, peeled = (line.split() + [""])[:3]
            tags[name] = peeled or obj
        return tags

    def tag_dates(self) -> dict[str, str]:
        """Tag name -> ISO day: the tagger date of an annotated tag, the commit date of a lightweight one."""
        out = self._repo.git.for_each_ref("refs/tags", format="%(refname:strip=2) %(creatordate:short)")
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def history(self, ref: str, path: str) -> Iterator[tuple[str, bytes | None]]:
        # --raw gives each commit's resulting blob id, so no checkout or per-commit lookup is needed.
        out = self._repo.git.log("--format=@%H", "--raw", "--no-abbrev", "--no-renames", ref, "--", path)
        commit = ""
        for line in out.splitlines():
            if line.startswith("@"):
                commit = line[1:]
            elif line.startswith(":"):
                new_sha = line.split()[3]
                yield commit, None if new_sha == _ZERO else self._blob(new_sha)

    def changed_files(self, old: str, new: str, prefix: str) -> list[str]:
        return self._repo.git.diff("--name-only", old, new, "--", prefix).splitlines()


class Workspace:
    """A bare mirror of `origin` under `cache_dir`; every change is made in a fresh worktree."""

    def __init__(
        self,
        origin: str,
        cache_dir: Path,
        default_branch: str = "",
        credentials: Callable[[], str | None] | None = None,
    ) -> None:
        self.origin = origin
        self.cache_dir = Path(cache_dir)
        self.mirror_path = self.cache_dir / "mirror.git"
        self._configured_branch = default_branch
        self._credentials = credentials
        self.quality_checks = True
        self.render_cache = RenderCache(self.cache_dir / "renders")
        self._odb_lock = threading.Lock()
        self._listings = Listings()
        self._loose: LooseObjectDB | None = None
        self._lock = threading.RLock()
        self._fetch_lock = threading.Lock()
        self._holder = threading.local()
        self._repo: git.Repo | None = None
        self._readers = threading.local()
        self._reader_repos: list[git.Repo] = []  # every thread's reader, so close() can end their cat-files

    def _git_env(self) -> dict[str, str]:
        """Credentials for git over HTTPS as an extra header in the environment.

        The token never appears in a remote URL, a command line (`ps`), git's own error text or
        the mirror's config; it is read fresh for every call, so refreshed app tokens apply.
        """
        token = self._credentials() if self._credentials else None
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_HTTP_LOW_SPEED_LIMIT": str(GIT_LOW_SPEED_BYTES),
               "GIT_HTTP_LOW_SPEED_TIME": str(GIT_LOW_SPEED_SECONDS)}
        if not (os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH")):
            env["GIT_SSH_COMMAND"] = (f"ssh -o BatchMode=yes -o ConnectTimeout={GIT_LOW_SPEED_SECONDS} "
                                      f"-o ServerAliveInterval=10 -o ServerAliveCountMax={GIT_LOW_SPEED_SECONDS // 10}")
        if token:
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
            )
        return env

    def _network(self, git_cmd: git.Git, *args: str) -> str:
        """A git command that talks to origin, bounded by the low-speed limits and the hard limit."""
        return git_cmd.execute(["git", *args], env=self._git_env(), kill_after_timeout=GIT_NETWORK_TIMEOUT_SECONDS)

    @contextmanager
    def fetching(self, wait: bool) -> Iterator[bool]:
        """One fetch into the mirror at a time (threads and processes); yields False, without
        waiting, when another is in flight and `wait` is False: the caller then reads the mirror as it is."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        if not self._fetch_lock.acquire(blocking=wait):
            yield False
            return
        try:
            with open(self.cache_dir / "fetch.lock", "w") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            self._fetch_lock.release()

    def fetch_commit(self, commit: str) -> None:
        """Make sure the mirror has `commit` (a PR head from a fork, say), fetching it if not; bounded."""
        try:
            self.repo.git.cat_file("-e", f"{commit}^{{commit}}")
            return
        except GitCommandError:
            pass
        with self.fetching(wait=True):
            try:
                self._network(self.repo.git, "fetch", "--quiet", "origin", commit)
            except GitCommandError as exc:
                raise _error(exc, f"cannot fetch {commit[:12]} from the repository: {_git_reason(exc)}") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise git work on the mirror across threads and processes (re-entrant in a thread)."""
        if getattr(self._holder, "depth", 0):
            self._holder.depth += 1
            try:
                yield
            finally:
                self._holder.depth -= 1
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.cache_dir / "mirror.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._holder.depth = 1
            try:
                yield
            finally:
                self._holder.depth = 0
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self._repo = self._open_mirror()
        return self._repo

    def _open_mirror(self) -> git.Repo:
        if (self.mirror_path / "HEAD").exists():
            return git.Repo(self.mirror_path)
        try:
            self._network(git.Git(), "clone", "--bare", "-q", "--", self.origin, str(self.mirror_path))
            repo = git.Repo(self.mirror_path)
        except GitCommandError as exc:
            shutil.rmtree(self.mirror_path, ignore_errors=True)
            raise _error(exc, f"cannot clone the repository {self.origin}: {_git_reason(exc)}") from None
        with repo.config_writer() as config:
            config.set_value('remote "origin"', "fetch", "+refs/heads/*:refs/heads/*")
            config.add_value('remote "origin"', "fetch", "+refs/tags/*:refs/tags/*")
        return repo

    def refresh(self, wait: bool = True) -> None:
        """Bring the mirror up to date with origin (branches, tags, deletions).

        Never under the mirror lock: git updates refs atomically, so reads go on meanwhile. With
        `wait` False, a fetch already in flight is not waited for (nor repeated).
        """
        with self.locked():
            repo = self.repo  # the first call clones the mirror
        with self.fetching(wait) as mine:
            if not mine:
                return
            try:
                self._network(repo.git, "fetch", "--prune", "--prune-tags", "--force", "origin")
            except GitCommandError as exc:
                raise _error(exc, f"cannot fetch from the repository: {_git_reason(exc)}") from None

    @property
    def default_branch(self) -> str:
        if self._configured_branch:
            return self._configured_branch
        heads = {h.name for h in self.repo.heads}
        for candidate in ("main", "master"):
            if candidate in heads:
                return candidate
        return self.repo.head.reference.name

    def reader(self, refresh: bool = True) -> GitReader:
        """A reader at the current tip of the default branch (the mirror as it is, if another
        request's fetch is in flight)."""
        if refresh:
            self.refresh(wait=False)
        with self.locked():
            branch = self.default_branch
            try:
                head = self.repo.git.rev_parse("--verify", f"refs/heads/{branch}^{{commit}}")
            except GitCommandError:
                raise WorkspaceError(f"the repository has no branch `{branch}`") from None
            return GitReader(self._reader_repo(), head, self._listings)

    def _reader_repo(self) -> git.Repo:
        # GitPython's object reader is one persistent `git cat-file --batch` per Repo and is not
        # thread-safe, so every thread reads through its own Repo (and its own cat-file).
        repo = getattr(self._readers, "repo", None)
        if repo is None:
            repo = self._readers.repo = git.Repo(self.repo.git_dir)
            with self._odb_lock:
                self._reader_repos.append(repo)
        return repo

    def close(self) -> None:
        """End the git processes the mirror's readers keep (shutdown); the workspace reopens on use."""
        with self._odb_lock:
            readers, self._reader_repos = self._reader_repos, []
        for repo in readers:
            repo.close()
        with self._lock:
            if self._repo is not None:
                self._repo.close()

    def branch_head(self, branch: str) -> str | None:
        """The commit a branch points to on origin, or None when origin has no such branch."""
        try:
            out = self._network(self.repo.git, "ls-remote", "--heads", self.origin, f"refs/heads/{branch}")
        except GitCommandError as exc:
            raise _error(exc, f"cannot read the branch {branch} from the repository: {_git_reason(exc)}") from None
        return out.split()[0] if out else None

    @retry(
        retry=retry_if_exception_type(_PushRejected),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def push_change(self, plan: ChangePlan) -> Pushed:
        """Commit the plan on the newest default branch and push its branch.

        If the default branch moved since the plan was made, the edit is rebuilt on it (a
        conflicting change to the same value is refused). The commit is written straight into
        the mirror's object store (no checkout), and the quality checks run on it before the
        push. Returns the pushed commit and the checks' report.
        """
        self.refresh()
        with self.locked():
            tip = self.repo.git.rev_parse(f"refs/heads/{self.default_branch}")
            base = GitReader(self._reader_repo(), tip, self._listings)
            files = {edit.path: _rebased(edit, base.read(tip, edit.path)) for edit in plan.edits}
            blobs = {path: None if content is None else self._store(b"blob", content) for path, content in files.items()}
            tree = self._write_tree(self._tree_of(tip), blobs) or self._store(b"tree", b"")
            commit = self._store(b"commit", _commit_object(tree, tip, plan.commit_message))
        # Outside the mirror lock: the commit's objects are written, and rendering and pushing only
        # read them, so changes to different clusters check and push side by side.
        report = CheckReport()
        if self.quality_checks:
            snapshot = RepoSnapshot(base.derive(commit, blobs))
            report = run_checks(plan, commit, files, snapshot, Renderer(self, self.render_cache), self.default_branch)
        try:
            self._network(self.repo.git, "push", "--force", self.origin, f"{commit}:refs/heads/{plan.branch}")
        except GitCommandError as exc:
            kind = _PushUnreachable if _unreachable(exc) else _PushRejected
            raise kind(f"cannot push the branch {plan.branch}: {_git_reason(exc)}") from None
        return Pushed(commit, report)

    # -- git objects, written and read in-process (the hot path of a promotion spawns no git) --

    def _store(self, kind: bytes, data: bytes) -> str:
        # gitdb writes the loose object itself; GitPython's own odb would spawn `git hash-object`.
        stored = self._objects.store(IStream(kind, len(data), BytesIO(data)))
        return stored.binsha.hex()

    @property
    def _objects(self) -> LooseObjectDB:
        if self._loose is None:
            self._loose = LooseObjectDB(str(Path(self.repo.git_dir) / "objects"))
        return self._loose

    def _tree_of(self, commit: str) -> str:
        header = self._read_object(commit).split(b"\n", 1)[0]
        return header.removeprefix(b"tree ").decode()

    def _read_object(self, oid: str) -> bytes:
        with self._odb_lock:
            return self.repo.odb.stream(bytes.fromhex(oid)).read()

    def _entries(self, tree: str | None) -> dict[str, tuple[int, bytes]]:
        if tree is None:
            return {}
        return {name: (mode, binsha) for binsha, mode, name in tree_entries_from_data(self._read_object(tree))}

    def _write_tree(self, tree: str | None, changes: Mapping[str, str | None]) -> str | None:
        """The tree `tree` with `changes` (path -> blob id, None: delete) applied; None if it ends empty."""
        entries = self._entries(tree)
        nested: dict[str, dict[str, str | None]] = {}
        for path, blob in changes.items():
            head, _, rest = path.partition("/")
            if rest:
                nested.setdefault(head, {})[rest] = blob
            elif blob is None:
                entries.pop(head, None)
            else:
                mode = entries[head][0] if head in entries and entries[head][0] != _TREE else 0o100644
                entries[head] = (mode, bytes.fromhex(blob))
        for name, below in nested.items():
            current = entries.get(name)
            subtree = self._write_tree(current[1].hex() if current and current[0] == _TREE else None, below)
            if subtree is None:
                entries.pop(name, None)  # git keeps no empty directories
            else:
                entries[name] = (_TREE, bytes.fromhex(subtree))
        if not entries:
            return None
        # git orders a tree's entries by name, a directory's name as if it ended in "/".
        ordered = sorted(entries.items(), key=lambda item: item[0].encode() + (b"/" if item[1][0] == _TREE else b""))
        return self._store(b"tree", b"".join(b"%o %s\0%s" % (mode, name.encode(), sha) for name, (mode, sha) in ordered))

    def tree_entries(self, ref: str, path: str) -> list[tuple[str, str]]:
        """(name, object id) of each entry of directory `path` at `ref`; [] when there is none."""
        try:
            with self._odb_lock:
                tree = self.repo.rev_parse(f"{ref}^{{tree}}")
        except (BadName, ValueError, IndexError):
            return []
        entries = self._entries(tree.hexsha)
        for part in filter(None, path.split("/")):
            found = entries.get(part)
            if found is None or found[0] != _TREE:
                return []
            entries = self._entries(found[1].hex())
        return [(name, sha.hex()) for name, (_mode, sha) in entries.items()]

    def export(self, ref: str, paths: Sequence[str], target: Path, max_bytes: int = MAX_INPUT_BYTES,
               directory: str = "") -> None:
        """Write `paths` as they are at `ref` under `target` (for rendering), at most `max_bytes` of what
        the render can read: every file under `directory`, and manifests (YAML, JSON) anywhere else
        (a repo's images and docs beside it do not count).

        Streamed from `git archive`, so an oversized tree is refused before it is all read; a symlink
        that points out of the tree (an absolute path, or `../` past the root) is refused by name.
        """
        process = subprocess.Popen(["git", "archive", "--format=tar", ref, "--", *paths], cwd=self.mirror_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None
        total = 0
        try:
            with tarfile.open(fileobj=process.stdout, mode="r|") as tar:
                for member in tar:
                    if _counted(member.name, directory):
                        total += member.size
                    if total > max_bytes:
                        raise InputTooLarge(member.name, member.size, max_bytes)
                    problem = _member_problem(member)
                    if problem:
                        raise UnsafeLink(member.name, problem)
                    tar.extract(member, target, **_NO_FILTER)
            process.stdout.read()  # the archive's padding, so git exits on its own
        except tarfile.ReadError:
            pass  # git failed before writing a tar: its message follows
        finally:
            if process.poll() is None and sys.exc_info()[0] is not None:
                process.kill()
            stderr = process.stderr.read() if process.stderr else b""
            process.wait()
            process.stdout.close()
            if process.stderr:
                process.stderr.close()
        if process.returncode != 0:
            raise WorkspaceError(f"cannot read {', '.join(paths)} at {ref}: {stderr.decode(errors='replace').strip()}")

    def tag(self, commit: str, name: str, message: str) -> None:
        """Create the annotated tag `name` on `commit` and push it to origin."""
        try:
            with self.locked():
                self.repo.git.tag("-a", name, "-m", message, commit, env=BOT_IDENTITY)
            self._network(self.repo.git, "push", self.origin, f"refs/tags/{name}")
        except GitCommandError as exc:
            raise _error(exc, f"cannot tag {commit[:12]} as {name}: {_git_reason(exc)}") from None

    def delete_branch(self, branch: str) -> None:
        """Remove a branch from origin (a no-op when it is already gone)."""
        # Only origin changes: the mirror is not touched, so no lock is held.
        if self.branch_head(branch) is None:
            return
        try:
            self._network(self.repo.git, "push", self.origin, f":refs/heads/{branch}")
        except GitCommandError as exc:
            raise _error(exc, f"cannot delete the branch {branch}: {_git_reason(exc)}") from None

    def merge(self, branch: str, message: str) -> str:
        """Merge `branch` into the default branch of origin with a merge commit; the merge commit id.

        When origin is a working copy with the default branch checked out, the push updates its
        work tree too (`updateInstead`), and refuses if that tree has uncommitted changes.
        """
        self.refresh()
        with self.locked():
            base = self.default_branch
            with self._worktree(f"refs/heads/{base}") as tree:
                work = git.Repo(tree)
                try:
                    work.git.merge("--no-ff", "-q", "-m", message, f"refs/heads/{branch}", env=BOT_IDENTITY)
                except GitCommandError:
                    files = work.git.diff("--name-only", "--diff-filter=U").split()
                    raise MergeConflict(f"{branch} does not merge cleanly into {base}", base, files) from None
                commit = work.head.commit.hexsha
        # The merge commit is in the mirror's object store (worktrees share it): pushed without the lock.
        try:
            self._network(self.repo.git, "push", "--receive-pack=git -c receive.denyCurrentBranch=updateInstead receive-pack",
                          self.origin, f"{commit}:refs/heads/{base}")
        except GitCommandError as exc:
            if _unreachable(exc):
                raise OriginUnavailable(f"cannot update {base}: {_git_reason(exc)}") from None
            raise WorkspaceError(f"cannot update {base}: {self._dirty(exc)}") from None
        self.refresh()
        return commit

    def _dirty(self, exc: GitCommandError) -> str:
        """A refused push into a checked-out work tree names its uncommitted files, not git's text."""
        origin = Path(self.origin)
        if "dirty" not in str(exc.stderr or "").lower() or not origin.is_dir():
            return _git_reason(exc)
        try:
            status = git.Repo(origin).git.status("--porcelain", "--untracked-files=no")
        except GitCommandError:
            return _git_reason(exc)
        files = [line[3:] for line in status.splitlines() if line.strip()]
        return (f"the work tree of {origin} has uncommitted changes in {', '.join(files[:10]) or 'some files'}; "
                "commit or stash them, then merge again")

    @contextmanager
    def _worktree(self, base: str) -> Iterator[Path]:
        parent = Path(tempfile.mkdtemp(prefix="fluxbot-wt-", dir=self.cache_dir))
        path = parent / "tree"
        try:
            self.repo.git.worktree("add", "--detach", "-q", str(path), base)
            yield path
        finally:
            try:
                self.repo.git.worktree("remove", "--force", str(path))
            except GitCommandError:
                self.repo.git.worktree("prune")
            shutil.rmtree(parent, ignore_errors=True)


def _counted(name: str, directory: str) -> bool:
    """Whether an exported file counts toward the render input cap."""
    return not directory or name == directory or name.startswith(directory + "/") or \
        name.lower().endswith((".yaml", ".yml", ".json"))


def _member_problem(member: tarfile.TarInfo) -> str:
    """Why an archive member may not be written under the render dir ('' when it may). Checked here,
    not by tarfile's data filter, which Python 3.11 has only from 3.11.4 (Debian 12 ships 3.11.2)."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        return "has a path outside the repository; fluxbot renders only files inside it"
    if member.issym():
        if PurePosixPath(member.linkname).is_absolute():
            return "is a symlink to an absolute path; fluxbot renders only files inside the repository"
        depth = 0
        for part in (path.parent / member.linkname).parts:  # git archive members are normalised
            depth += -1 if part == ".." else 0 if part == "." else 1
            if depth < 0:
                return "is a link that points outside the repository; fluxbot renders only files inside it"
    elif not (member.isfile() or member.isdir()):
        return "is neither a file, a directory nor a symlink; fluxbot renders only those"
    return ""


# git writes only files, directories and symlinks, checked above; where tarfile has its data filter
# (3.11.4+) it is passed as well, and without it newer Pythons warn.
_NO_FILTER: dict[str, str] = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


def _rebased(edit: FileEdit, current: bytes | None) -> bytes | None:
    """The edit's content on the file as it is now; None for a deletion."""
    if edit.delete:
        if current != edit.before:
            raise CommandError(f"{edit.path} changed on the default branch since the change was planned")
        return None
    if edit.before is None and current is not None:
        raise CommandError(f"{edit.path} was created on the default branch meanwhile")
    return rebase_edit(edit, current)


def _commit_object(tree: str, parent: str, message: str) -> bytes:
    identity = f"{BOT_IDENTITY['GIT_AUTHOR_NAME']} <{BOT_IDENTITY['GIT_AUTHOR_EMAIL']}> {int(time.time())} +0000"
    text = f"tree {tree}\nparent {parent}\nauthor {identity}\ncommitter {identity}\n\n{message.rstrip()}\n"
    return text.encode("utf-8")


# What git prints when the remote is down or failing, as opposed to refusing (auth, conflicts).
_UNREACHABLE = ("could not resolve host", "failed to connect", "connection refused", "connection timed out",
                "operation timed out", "connection reset", "the remote end hung up unexpectedly",
                "returned error: 50", "returned error: 429",
                "did not complete in",  # GitPython's kill_after_timeout: the hard limit was reached
                "operation too slow")  # curl's low-speed limit


def _unreachable(exc: GitCommandError) -> bool:
    return any(marker in str(exc.stderr or "").lower() for marker in _UNREACHABLE)


def _error(exc: GitCommandError, message: str) -> WorkspaceError:
    return (OriginUnavailable if _unreachable(exc) else WorkspaceError)(message)


def _git_reason(exc: GitCommandError) -> str:
    """The last meaningful line git printed, for a user-facing error."""
    if "did not complete in" in str(exc.stderr or ""):
        return f"the repository did not answer within {GIT_NETWORK_TIMEOUT_SECONDS:g} s (timed out)"
    lines = [l.strip() for l in str(exc.stderr or "").splitlines() if l.strip()]
    reason = lines[-1] if lines else f"git exited with {exc.status}"
    return reason.removeprefix("stderr: ").strip("'")
