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
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import git
from git.exc import GitCommandError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from bot.checks import CheckReport, run_checks
from commands.model import ChangePlan, CommandError
from commands.yamledit import rebase_edit

log = logging.getLogger(__name__)

_ZERO = "0" * 40
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


class _PushRejected(WorkspaceError):
    """A push failed; it is tried again a few times, since the remote may just be busy."""


class GitReader:
    """`commands.repo.TreeReader` over the mirror: blobs come through one `cat-file --batch`."""

    def __init__(self, repo: git.Repo, head: str) -> None:
        self._repo = repo
        self.head = head
        self._trees: dict[str, dict[str, str]] = {}
        self._blobs: dict[str, bytes] = {}

    def _tree(self, ref: str) -> dict[str, str]:
        if ref not in self._trees:
            listing = self._repo.git.ls_tree("-r", "-z", "--full-tree", ref)
            tree = {}
            for entry in filter(None, listing.split("\0")):
                meta, path = entry.split("\t", 1)
                _mode, kind, sha = meta.split()
                if kind == "blob":
                    tree[path] = sha
            self._trees[ref] = tree
        return self._trees[ref]

    def list_files(self, ref: str, prefix: str) -> list[str]:
        return sorted(p for p in self._tree(ref) if p.startswith(prefix))

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
        self._lock = threading.RLock()
        self._repo: git.Repo | None = None
        self._readers = threading.local()

    def _git_env(self) -> dict[str, str]:
        """Credentials for git over HTTPS as an extra header in the environment.

        The token never appears in a remote URL, a command line (`ps`), git's own error text or
        the mirror's config; it is read fresh for every call, so refreshed app tokens apply.
        """
        token = self._credentials() if self._credentials else None
        env = {"GIT_TERMINAL_PROMPT": "0"}
        if token:
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
            )
        return env

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise git work on the mirror across threads and processes."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.cache_dir / "mirror.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
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
            repo = git.Repo.clone_from(self.origin, self.mirror_path, bare=True, env=self._git_env())
        except GitCommandError as exc:
            shutil.rmtree(self.mirror_path, ignore_errors=True)
            raise WorkspaceError(f"cannot clone the repository {self.origin}: {_git_reason(exc)}") from None
        with repo.config_writer() as config:
            config.set_value('remote "origin"', "fetch", "+refs/heads/*:refs/heads/*")
            config.add_value('remote "origin"', "fetch", "+refs/tags/*:refs/tags/*")
        return repo

    def refresh(self) -> None:
        """Bring the mirror up to date with origin (branches, tags, deletions)."""
        try:
            self.repo.git.fetch("--prune", "--prune-tags", "--force", "origin", env=self._git_env())
        except GitCommandError as exc:
            raise WorkspaceError(f"cannot fetch from the repository: {_git_reason(exc)}") from None

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
        """A reader at the current tip of the default branch."""
        with self.locked():
            if refresh:
                self.refresh()
            branch = self.default_branch
            try:
                head = self.repo.git.rev_parse("--verify", f"refs/heads/{branch}^{{commit}}")
            except GitCommandError:
                raise WorkspaceError(f"the repository has no branch `{branch}`") from None
            return GitReader(self._reader_repo(), head)

    def _reader_repo(self) -> git.Repo:
        # GitPython's object reader is one persistent `git cat-file --batch` per Repo and is not
        # thread-safe, so every thread reads through its own Repo (and its own cat-file).
        repo = getattr(self._readers, "repo", None)
        if repo is None:
            repo = self._readers.repo = git.Repo(self.repo.git_dir)
        return repo

    def branch_head(self, branch: str) -> str | None:
        """The commit a branch points to on origin, or None when origin has no such branch."""
        out = self.repo.git.ls_remote("--heads", self.origin, f"refs/heads/{branch}", env=self._git_env())
        return out.split()[0] if out else None

    @retry(
        retry=retry_if_exception_type(_PushRejected),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
    def push_change(self, plan: ChangePlan) -> Pushed:
        """Commit the plan on the newest default branch in a fresh worktree, push its branch.

        If the default branch moved since the plan was made, the edit is rebuilt on it (a
        conflicting change to the same value is refused). The quality checks run on the result
        before the push. Returns the pushed commit and the checks' report.
        """
        with self.locked():
            self.refresh()
            tip = self.repo.git.rev_parse(f"refs/heads/{self.default_branch}")
            with self._worktree(tip) as tree:
                for edit in plan.edits:
                    target = tree / edit.path
                    current = target.read_bytes() if target.exists() else None
                    if edit.delete:
                        if current != edit.before:
                            raise CommandError(f"{edit.path} changed on the default branch since the change was planned")
                        target.unlink()
                        continue
                    if edit.before is None and current is not None:
                        raise CommandError(f"{edit.path} was created on the default branch meanwhile")
                    content = rebase_edit(edit, current)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(content)
                report = run_checks(tree, plan, self.mirror_path) if self.quality_checks else CheckReport()
                work = git.Repo(tree)
                work.git.add("-A", "--", *[e.path for e in plan.edits])
                work.git.commit("-q", "--no-verify", "-m", plan.commit_message, env=BOT_IDENTITY)
                commit = work.head.commit.hexsha
                try:
                    work.git.push("--force", self.origin, f"{commit}:refs/heads/{plan.branch}", env=self._git_env())
                except GitCommandError as exc:
                    raise _PushRejected(f"cannot push the branch {plan.branch}: {_git_reason(exc)}") from None
                return Pushed(commit, report)

    def tag(self, commit: str, name: str, message: str) -> None:
        """Create the annotated tag `name` on `commit` and push it to origin."""
        with self.locked():
            try:
                self.repo.git.tag("-a", name, "-m", message, commit, env=BOT_IDENTITY)
                self.repo.git.push(self.origin, f"refs/tags/{name}", env=self._git_env())
            except GitCommandError as exc:
                raise WorkspaceError(f"cannot tag {commit[:12]} as {name}: {_git_reason(exc)}") from None

    def delete_branch(self, branch: str) -> None:
        """Remove a branch from origin (a no-op when it is already gone)."""
        with self.locked():
            if self.branch_head(branch) is None:
                return
            try:
                self.repo.git.push(self.origin, f":refs/heads/{branch}", env=self._git_env())
            except GitCommandError as exc:
                raise WorkspaceError(f"cannot delete the branch {branch}: {_git_reason(exc)}") from None

    def merge(self, branch: str, message: str) -> str:
        """Merge `branch` into the default branch of origin with a merge commit; the merge commit id.

        When origin is a working copy with the default branch checked out, the push updates its
        work tree too (`updateInstead`), and refuses if that tree has uncommitted changes.
        """
        with self.locked():
            self.refresh()
            base = self.default_branch
            with self._worktree(f"refs/heads/{base}") as tree:
                work = git.Repo(tree)
                try:
                    work.git.merge("--no-ff", "-q", "-m", message, f"refs/heads/{branch}", env=BOT_IDENTITY)
                except GitCommandError:
                    raise WorkspaceError(f"{branch} does not merge cleanly into {base}") from None
                commit = work.head.commit.hexsha
                try:
                    work.git.push(
                        "--receive-pack=git -c receive.denyCurrentBranch=updateInstead receive-pack",
                        self.origin,
                        f"{commit}:refs/heads/{base}",
                        env=self._git_env(),
                    )
                except GitCommandError as exc:
                    raise WorkspaceError(f"cannot update {base}: {_git_reason(exc)}") from None
            self.refresh()
            return commit

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


def _git_reason(exc: GitCommandError) -> str:
    """The last meaningful line git printed, for a user-facing error."""
    lines = [l.strip() for l in str(exc.stderr or "").splitlines() if l.strip()]
    reason = lines[-1] if lines else f"git exited with {exc.status}"
    return reason.removeprefix("stderr: ").strip("'")
