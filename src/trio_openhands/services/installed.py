"""The user's installed skills and plugins (`~/.openhands/{skills,plugins}/installed/`),
managed with the SDK's own installers; one set of operations for both kinds.

Only local directories are installed: a git or GitHub source would be fetched from its
host, which this server never does (`NeedsNetwork`, a 501). The store's directory is found
when called (`HOME`, `OH_PERSISTENCE_DIR`), not from the SDK's import-time constants.
Every function here blocks: call it through `trio.to_thread.run_sync`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trio_openhands.services.errors import (
    BadRequest,
    Conflict,
    InvalidInput,
    NeedsNetwork,
    NotFound,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import ModuleType

    from openhands.sdk.extensions.installation import InstallationInfo


@dataclass(frozen=True)
class Kind:
    """Skills or plugins: the SDK module with the installers and how its answers read."""

    noun: str  # "skill", "plugin": the SDK's `install_skill`, `install_plugin`, ...
    sdk_module: str  # "openhands.sdk.skills", "openhands.sdk.plugin"
    store: str  # the directory under the user's ~/.openhands: "skills", "plugins"
    details: Callable[[Path], dict[str, Any]] | None = None  # extra fields of an answer

    @property
    def title(self) -> str:
        return self.noun.capitalize()

    def sdk(self, operation: str, *, plural: bool = False) -> Callable[..., Any]:
        """The SDK's `{operation}_{noun}` (`list_installed_skills`: plural)."""
        import importlib

        module: ModuleType = importlib.import_module(self.sdk_module)
        return getattr(module, f"{operation}_{self.noun}{'s' if plural else ''}")

    def installed_dir(self) -> Path:
        from openhands.sdk.utils.path import get_user_persistence_dir

        return get_user_persistence_dir() / self.store / "installed"

    def not_installed(self, name: str) -> NotFound:
        return NotFound(f"{self.title} '{name}' is not installed")

    def answer(self, info: InstallationInfo) -> dict[str, Any]:
        """An installed one as the reference answers it."""
        answer: dict[str, Any] = {
            "name": info.name,
            "version": info.version,
            "description": info.description,
            "enabled": info.enabled,
            "source": info.source,
            "resolved_ref": info.resolved_ref,
            "repo_path": info.repo_path,
            "installed_at": info.installed_at,
            "install_path": str(info.install_path),
        }
        if self.details is not None:
            answer.update(self.details(info.install_path))
        return answer


def list_installed(kind: Kind) -> list[dict[str, Any]]:
    infos = kind.sdk("list_installed", plural=True)(installed_dir=kind.installed_dir())
    return [kind.answer(info) for info in infos]


def get_installed(kind: Kind, name: str) -> dict[str, Any]:
    info = kind.sdk("get_installed")(name, installed_dir=kind.installed_dir())
    if info is None:
        raise kind.not_installed(name)
    return kind.answer(info)


def set_enabled(kind: Kind, name: str, enabled: bool) -> None:
    toggle = kind.sdk("enable" if enabled else "disable")
    if not toggle(name, installed_dir=kind.installed_dir()):
        raise kind.not_installed(name)


def uninstall(kind: Kind, name: str) -> None:
    if not kind.sdk("uninstall")(name, installed_dir=kind.installed_dir()):
        raise kind.not_installed(name)


def install(kind: Kind, source: str, repo_path: str | None, force: bool) -> dict[str, Any]:
    """Install from a local directory (`repo_path` a directory within it)."""
    require_local(source)
    try:
        info = kind.sdk("install")(
            source, repo_path=repo_path, installed_dir=kind.installed_dir(), force=force
        )
    except FileExistsError:
        raise Conflict(f"{kind.title} already installed. Use force=true to overwrite.") from None
    except Exception as error:
        raise _refusal(kind, error, f"Failed to fetch the {kind.noun} source") from None
    return kind.answer(info)


def refresh(kind: Kind, name: str) -> dict[str, Any]:
    """Install again from the recorded source, when that is a local directory."""
    current = kind.sdk("get_installed")(name, installed_dir=kind.installed_dir())
    if current is None:
        raise kind.not_installed(name)
    require_local(current.source)
    try:
        info = kind.sdk("update")(name, installed_dir=kind.installed_dir())
    except Exception as error:
        kept = f"The source of {kind.noun} '{name}' cannot be installed (the copy is kept)"
        raise _refusal(kind, error, kept) from None
    if info is None:
        raise kind.not_installed(name)
    return kind.answer(info)


def _refusal(kind: Kind, error: Exception, what: str) -> BadRequest | InvalidInput:
    """The SDK's errors of an install: an invalid one is a 422, one it could not read a 400;
    anything else propagates (a 500 with its traceback in the log)."""
    from openhands.sdk.extensions.fetch import ExtensionFetchError

    fetch_errors: tuple[type[Exception], ...] = (ExtensionFetchError, OSError)
    invalid: tuple[type[Exception], ...] = (ValueError,)  # an invalid name or manifest
    if kind.noun == "skill":
        from openhands.sdk.skills import SkillFetchError, SkillValidationError

        fetch_errors += (SkillFetchError,)
        invalid += (SkillValidationError,)
    else:
        from openhands.sdk.plugin import PluginFetchError

        fetch_errors += (PluginFetchError,)
    if isinstance(error, fetch_errors):
        return BadRequest(f"{what}: {error}", field="source")
    if isinstance(error, invalid):
        return InvalidInput(f"{what}: {error}", field="source")
    raise error


def require_local(source: str, field: str = "source") -> None:
    """A local directory, else a 501 (a git host) or a 422 (no source at all)."""
    from openhands.sdk.extensions.fetch import (
        ExtensionFetchError,
        SourceType,
        parse_extension_source,
    )

    try:
        source_type, _ = parse_extension_source(source)
    except ExtensionFetchError as error:
        raise InvalidInput(str(error), field=field) from None
    if source_type is not SourceType.LOCAL:
        raise NeedsNetwork(
            f"'{source}' would be fetched from a git host; this server installs from local "
            "directories only",
            field=field,
        )
