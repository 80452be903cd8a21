"""`kubectl kustomize` of one directory of a git tree, the way Flux's kustomize-controller builds it,
with repo content treated as untrusted input.

Before kubectl runs: the directory and what it may load are exported from git (bounded in size; a
symlink out of the tree is refused), and every kustomization it reaches is read for remote
resources (URLs, `git::`, `ssh:`, `github.com/...`), which are refused. kubectl then runs with a
minimal environment (no tokens), a memory limit, a timeout and, where the machine allows, no
network (`unshare -n`). Renders, and failed renders, are cached on disk by the git trees they read.

Who calls it: `bot.git.checks`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, Sequence

from bot.metrics import RENDER_SECONDS, RENDERS
from commands.model import CommandError
from commands.repo import CLUSTERS_DIR, documents_or_none

log = logging.getLogger(__name__)

YAML_SUFFIXES = (".yaml", ".yml")
# Bumped when what is cached changes shape (v2: origin annotations, failures cached too).
_FORMAT = "v2"
KEEP_RENDERS = 512
KEEP_BYTES = 256 * 1024 * 1024
# Bounds on what repo content may cost one render. A real fleet repo's biggest input is Flux's own
# gotk-components.yaml (under 1 MB); a 50 MB file once held a worker for two minutes.
MAX_INPUT_BYTES = 16 * 1024 * 1024
RENDER_TIMEOUT_SECONDS = 120.0
MEMORY_LIMIT_BYTES = 512 * 1024 * 1024
# A timeout or the memory limit may be the machine's load, not the tree: such failures are kept
# only this long, so retries within it are answered at once without paying again.
TRANSIENT_FAILURE_SECONDS = 600.0
_MESSAGE_LIMIT = 1500
_KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
NOTHING_PUSHED = "nothing was pushed"
ORIGIN_ANNOTATION = "config.kubernetes.io/origin"
_LABEL = "\u2063label\u2063"


class GitTrees(Protocol):
    """What rendering needs from git: tree ids to key renders by, and an export to render from."""

    def tree_entries(self, ref: str, path: str) -> list[tuple[str, str]]: ...  # (name, object id); [] if absent

    def export(self, ref: str, paths: Sequence[str], target: Path, max_bytes: int, directory: str) -> None: ...


class RenderRefused(CommandError):
    """A render failed or was refused because of what the tree holds; cached with the render."""


class InputTooLarge(Exception):
    """The files a render would read are more than the cap (`path` is where the sum crossed it)."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(path)
        self.path, self.size, self.limit = path, size, limit


class UnsafeLink(Exception):
    """A link in the tree that would reach outside it (`problem` says how, in words)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path)
        self.path, self.problem = path, problem


@dataclass(frozen=True)
class Isolation:
    """How kubectl is kept off the network here, and the words that say so."""

    prefix: tuple[str, ...]
    description: str


@lru_cache(maxsize=1)
def isolation() -> Isolation:
    """`unshare -n` (root, or CAP_SYS_ADMIN) or `unshare -rn` (a user namespace) where either works."""
    unshare = shutil.which("unshare") or next((p for p in ("/usr/bin/unshare", "/bin/unshare") if os.path.exists(p)), None)
    if unshare:
        for flags in ("-n", "-rn"):
            try:
                probe = subprocess.run([unshare, flags, "true"], capture_output=True, timeout=10, env={"PATH": "/usr/bin:/bin"})
            except (OSError, subprocess.TimeoutExpired):
                continue
            if probe.returncode == 0:
                return Isolation((unshare, flags), f"without network (`unshare {flags}`)")
    log.warning("renders can reach the network: `unshare -n` does not work here (no user namespaces)")
    return Isolation((), "with the network reachable (`unshare -n` does not work on this machine)")


# Runs as the child: set the memory limit, then become kubectl (so a timeout kills kubectl itself).
# RLIMIT_DATA, not RLIMIT_AS: Go reserves far more address space than it ever uses.
_LIMITED = "import os,resource,sys;n=int(sys.argv[1]);resource.setrlimit(resource.RLIMIT_DATA,(n,n));os.execv(sys.argv[2],sys.argv[2:])"


class RenderCache:
    """Rendered YAML (and render failures) on disk, keyed by the trees rendered and the kubectl that did it.

    Bounded by count and by bytes, oldest out first.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.hits = self.misses = 0

    def get(self, key: str) -> str | None:
        if self.directory is None:
            return None
        try:
            text = (self.directory / f"{key}.yaml").read_text()
        except FileNotFoundError:
            self.misses += 1
            return None
        self.hits += 1
        return text

    def failure(self, key: str, label: str) -> RenderRefused | None:
        """The failure a render of exactly these trees met before, while it is still trusted.

        Stored without the label it was first reported under (another tag may share the trees)."""
        if self.directory is None:
            return None
        try:
            record = json.loads((self.directory / f"{key}.failed").read_text())
        except (FileNotFoundError, ValueError):
            return None
        if record.get("expires") is not None and record["expires"] < time.time():
            return None
        self.hits += 1
        return RenderRefused(record["message"].replace(_LABEL, label), record.get("hint", ""))

    def put(self, key: str, text: str) -> None:
        self._write(f"{key}.yaml", text)

    def put_failure(self, key: str, error: RenderRefused, label: str, transient: bool) -> None:
        expires = time.time() + TRANSIENT_FAILURE_SECONDS if transient else None
        message = error.what.replace(label, _LABEL)
        self._write(f"{key}.failed", json.dumps({"message": message, "hint": error.hint, "expires": expires}))

    def _write(self, name: str, text: str) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(scratch, self.directory / name)
        self._prune()

    def _prune(self) -> None:
        assert self.directory is not None
        entries = []
        for path in self.directory.iterdir():
            if path.suffix in (".yaml", ".failed"):
                try:
                    stat = path.stat()
                except FileNotFoundError:  # another thread pruned it meanwhile
                    continue
                entries.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        entries.sort()
        # Oldest out until both bounds hold; the newest entry always stays.
        while len(entries) > 1 and (len(entries) > KEEP_RENDERS or total > KEEP_BYTES):
            _, size, stale = entries.pop(0)
            stale.unlink(missing_ok=True)
            total -= size


@dataclass
class Renderer:
    """`kubectl kustomize` of a directory of a git tree, through the render cache."""

    trees: GitTrees
    cache: RenderCache
    kubectl: str | None = field(default_factory=lambda: shutil.which("kubectl"))
    _inflight: dict[str, Future[str]] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def render(self, ref: str, directory: str, label: str) -> str:
        """The kustomize output of `directory` at `ref` (each object annotated with the file it came
        from); raises CommandError if it does not build or is refused."""
        assert self.kubectl
        key = self._key(ref, directory)
        cached = self.cache.get(key)
        if cached is not None:
            RENDERS.labels("cached").inc()
            return cached
        failed = self.cache.failure(key, label)
        if failed is not None:
            RENDERS.labels("cached").inc()
            raise failed
        # The same tree asked for twice at once (the infrastructure of a tag, by two promotions or
        # by a prefetch and the walk) renders once.
        with self._lock:
            future = self._inflight.get(key)
            owner = future is None
            if owner:
                future = self._inflight[key] = Future()
        assert future is not None
        if not owner:
            RENDERS.labels("shared").inc()
            return future.result()
        started = time.monotonic()
        try:
            text = self._render(ref, directory, label, key)
        except BaseException as error:
            RENDERS.labels("failed").inc()
            future.set_exception(error)
            raise
        else:
            RENDERS.labels("rendered").inc()
            RENDER_SECONDS.observe(time.monotonic() - started)
            future.set_result(text)
            return text
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def _key(self, ref: str, directory: str) -> str:
        top = directory.split("/", 1)[0]
        # What a directory may load: itself and the repo around it (`../../apps/x`), but not the
        # clusters, so no render (a cluster's, or the infrastructure's) depends on, or exports, a
        # thousand cluster directories.
        entries = [(name, oid) for name, oid in self.trees.tree_entries(ref, "") if name not in (top, CLUSTERS_DIR)]
        entries += [(directory, oid) for oid in self._tree_id(ref, directory)]
        limits = (MAX_INPUT_BYTES, MEMORY_LIMIT_BYTES, RENDER_TIMEOUT_SECONDS)
        return _key(_FORMAT, self._kubectl_identity(), limits, directory, entries)

    def _render(self, ref: str, directory: str, label: str, key: str) -> str:
        top = directory.split("/", 1)[0]
        paths = [name for name, _ in self.trees.tree_entries(ref, "") if name not in (top, CLUSTERS_DIR)]
        if self._tree_id(ref, directory):
            paths.append(directory)
        with tempfile.TemporaryDirectory(prefix="fluxbot-render-") as scratch:
            root = Path(scratch) / "tree"
            root.mkdir()
            try:
                try:
                    self.trees.export(ref, paths, root, MAX_INPUT_BYTES, directory)
                except InputTooLarge as error:
                    raise RenderRefused(
                        f"quality gate: the files a render of {label} reads are more than {error.limit // 2**20} MiB "
                        f"(reached at {error.path}, {error.size:,} bytes)",
                        "keep large files out of the rendered directories and what they load (fluxbot caps render input)"
                    ) from None
                except UnsafeLink as error:
                    raise RenderRefused(f"quality gate: {error.path} at {where(ref)} {error.problem}",
                                        "make it a relative link inside the repository, or a regular file") from None
                refuse_remote(root, directory)
                text = _render_dir(self.kubectl or "", root, directory, label, Path(scratch))
            except RenderRefused as error:
                self.cache.put_failure(key, error, label, transient=getattr(error, "transient", False))
                raise
        self.cache.put(key, text)
        return text

    def _tree_id(self, ref: str, directory: str) -> list[str]:
        parent, _, name = directory.rpartition("/")
        return [oid for entry, oid in self.trees.tree_entries(ref, parent) if entry == name]

    def _kubectl_identity(self) -> str:
        stat = os.stat(self.kubectl or "")
        return f"{os.path.realpath(self.kubectl or '')}:{stat.st_size}:{stat.st_mtime_ns}"


def where(ref: str) -> str:
    """A ref as a person says it: `v0.4.0`, `main`, or a short commit id."""
    if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
        return ref[:12]
    return ref.removeprefix("refs/tags/").removeprefix("refs/heads/")


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


# -- remote resources -------------------------------------------------------------------------------

# What kustomize would fetch instead of reading from disk: any URL scheme, go-getter forms, scp-like
# git addresses and host/path forms such as `github.com/org/repo//dir?ref=v1`.
_REMOTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|git::|ssh:|[^/@\s]+@[^/:\s]+:|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?::\d+)?/)")
# Kustomization fields whose entries kustomize may load from elsewhere.
_LOADING_FIELDS = ("resources", "bases", "components", "generators", "transformers", "validators", "crds")


def refuse_remote(root: Path, directory: str) -> None:
    """Refuse a render whose kustomizations (from `directory` on) load anything from outside the repo."""
    seen: set[str] = set()

    def visit(relative: str) -> None:
        relative = posixpath.normpath(relative)
        if relative in seen or relative.startswith(".."):
            return
        seen.add(relative)
        folder = root / relative
        for name in _KUSTOMIZATION_FILES:
            file = folder / name
            if file.is_file():
                break
        else:
            return
        path = f"{relative}/{name}" if relative != "." else name
        docs = documents_or_none(file.read_bytes())
        data = docs[0] if docs and isinstance(docs[0], dict) else {}
        for key in _LOADING_FIELDS:
            entries = data.get(key) or []
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, str):
                    continue
                local = posixpath.normpath(posixpath.join(relative, entry))
                if _REMOTE.match(entry) and not (root / local).exists():
                    raise RenderRefused(
                        f"quality gate: {path} loads the remote {key[:-1] if key.endswith('s') else key} `{entry}`; "
                        "fluxbot renders only what is in the repository and never fetches remote resources or bases",
                        "vendor it into the repository (or let a Flux source fetch it) and refer to it by a relative path",
                    )
                if (root / local).is_dir():
                    visit(local)

    visit(directory)
    if not any((root / directory / name).is_file() for name in _KUSTOMIZATION_FILES) and (root / directory).is_dir():
        # Flux generates the kustomization of a path without one from its subdirectories.
        for sub in sorted(p for p in (root / directory).rglob("*") if p.name in _KUSTOMIZATION_FILES):
            visit(str(sub.parent.relative_to(root)))


# -- kubectl ----------------------------------------------------------------------------------------

def _render_dir(kubectl: str, root: Path, directory: str, label: str, scratch: Path) -> str:
    folder = root / directory
    if not folder.is_dir():
        raise RenderRefused(f"quality gate: {label} does not exist", NOTHING_PUSHED)
    existing = next((folder / n for n in _KUSTOMIZATION_FILES if (folder / n).is_file()), None)
    if existing is None:
        # Flux generates a kustomization for a path without one; do the same (in the scratch copy).
        resources = "".join(f"  - {r}\n" for r in _flux_resources(folder, folder))
        (folder / "kustomization.yaml").write_text(
            f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{resources}"
            "buildMetadata: [originAnnotations]\n")
    else:
        _annotate_origins(existing)
    return _kustomize(kubectl, folder, root, label, scratch)


def _annotate_origins(kustomization: Path) -> None:
    """Ask kustomize to note each object's source file, so a failure can name it."""
    docs = documents_or_none(kustomization.read_bytes())
    if len(docs) != 1 or not isinstance(docs[0], dict) or "buildMetadata" in docs[0]:
        return
    text = kustomization.read_text()
    kustomization.write_text(text + ("" if text.endswith("\n") else "\n") + "buildMetadata: [originAnnotations]\n")


def _flux_resources(root: Path, directory: Path) -> list[str]:
    found = []
    for entry in sorted(directory.iterdir()):
        if entry.is_dir():
            if any((entry / n).is_file() for n in _KUSTOMIZATION_FILES):
                found.append(str(entry.relative_to(root)))
            else:
                found += _flux_resources(root, entry)
        elif entry.suffix in YAML_SUFFIXES and entry.name != "kustomization.yaml":
            found.append(str(entry.relative_to(root)))
    return found


def _kustomize(kubectl: str, folder: Path, root: Path, label: str, scratch: Path) -> str:
    sandbox = isolation()
    argv = [*sandbox.prefix, sys.executable, "-I", "-S", "-c", _LIMITED, str(MEMORY_LIMIT_BYTES),
            kubectl, "kustomize", str(folder)]
    # Nothing of fluxbot's environment (tokens, proxies, credentials helpers) reaches kubectl.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch), "KUBECONFIG": os.devnull,
           "LANG": "C.UTF-8", "GOMEMLIMIT": str(MEMORY_LIMIT_BYTES * 3 // 4)}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=scratch, start_new_session=True)
    try:
        out, err = process.communicate(timeout=RENDER_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        _kill(process)
        error = RenderRefused(
            f"quality gate: {label} did not render within {RENDER_TIMEOUT_SECONDS:g} s (`kubectl kustomize` was stopped)",
            "make the rendered tree smaller, or ask an operator whether the machine is overloaded")
        error.transient = True  # type: ignore[attr-defined]
        raise error from None
    if process.returncode != 0:
        if any(m in err for m in _OUT_OF_MEMORY) or process.returncode in (-signal.SIGKILL, 137):
            error = RenderRefused(
                f"quality gate: {label} needs more than {MEMORY_LIMIT_BYTES // 2**20} MiB to render "
                "(`kubectl kustomize` stopped at its memory limit)",
                "look for YAML aliases or generated content that expands; nothing was pushed")
            error.transient = True  # type: ignore[attr-defined]
            raise error
        raise RenderRefused(f"quality gate: {label} does not render: {clean_message(err, root)}", NOTHING_PUSHED)
    return out


def _kill(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()


# What the Go runtime says when RLIMIT_DATA stops it.
_OUT_OF_MEMORY = ("out of memory", "cannot allocate memory", "failed to reserve")
_KLOG = re.compile(r'^[EWIF]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] ')


def clean_message(stderr: str, root: Path) -> str:
    """kubectl's whole error, without klog's framing or the scratch directory, on one bounded line.

    klog prints `"command failed" err="..."` for one line and `err=<` ... ` >` for several.
    """
    lines = []
    for line in stderr.splitlines():
        line = _KLOG.sub("", line.strip())
        if line.startswith('"command failed" err='):
            line = line.removeprefix('"command failed" err=')
            if line == "<":
                continue
            line = line.strip('"').replace('\\"', '"').replace("\\n", " ")
        if line == ">":
            continue
        line = line.removeprefix("error: ").strip()
        if line:
            lines.append(line)
    text = " ".join(lines) or "kustomize failed without a message"
    text = text.replace(f"{root}/", "").replace(str(root), ".")
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def origin(obj: Any, directory: str) -> str:
    """The repo path of the file an object of a render of `directory` came from ('' if unknown)."""
    note = ((obj.get("metadata") or {}).get("annotations") or {}).get(ORIGIN_ANNOTATION) if isinstance(obj, dict) else None
    if not isinstance(note, str):
        return ""
    match = re.search(r"^path:\s*(\S+)", note, re.M)
    return posixpath.normpath(posixpath.join(directory, match.group(1))) if match else ""
