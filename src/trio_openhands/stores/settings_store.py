"""The server-held configuration a UI edits: agent and conversation settings, the UI's own
opaque `misc_settings`, the active profile pointers and the custom secrets.

All of it is one file, `<conversations_dir>/settings.json`, written atomically (temporary
file, fsync, rename). Every secret in it (the LLM key, MCP headers and env, custom secret
values) is a Fernet token made with the server secret, the one that encrypts the SDK's
stored keys: no value is ever on disk in plain text. Changes are read-modify-write under one
lock, so two concurrent PATCHes each see the other's result and neither is lost; only this
process writes the file (the conversations directory is locked by its server).

With the shared database (`shared`, a `BlobStore`), the same document is kept there
instead, as `settings.json`, encrypted the same way, and its read-modify-write is
serialized across instances (the blob store's lock), so every instance serves the same
settings and secrets.

The SDK's settings types are used once it is loaded (callers wait for it first); LLM and
agent profiles are the SDK's own stores, in `<conversations_dir>/.profiles/`, shared through
the database as well when there is one (`profiles`, stores/profile_stores.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import trio

from trio_openhands.stores import file_store
from trio_openhands.stores.profile_stores import PROFILES_DIR, ProfileStores

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from openhands.sdk.settings import ConversationSettings
    from openhands.sdk.utils.cipher import Cipher

    from trio_openhands.stores.postgres.blobs import BlobStore

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
FILE_VERSION = 1


class SettingsUnreadable(RuntimeError):
    """settings.json exists but cannot be read or decrypted (a different server secret)."""


@dataclass(frozen=True)
class StoredSecret:
    value: str = field(repr=False)
    description: str | None = None


@dataclass(frozen=True)
class ServerSettings:
    """What settings.json holds, with secrets decrypted (in memory only)."""

    agent_settings: Any  # the SDK's AgentSettingsConfig (OpenHands or ACP variant)
    conversation_settings: ConversationSettings
    misc_settings: dict[str, Any] = field(default_factory=dict[str, Any])
    active_profile: str | None = None
    active_agent_profile_id: str | None = None
    active_meta_profile: str | None = None
    secrets: dict[str, StoredSecret] = field(default_factory=dict[str, StoredSecret])

    def replace(self, **changes: Any) -> ServerSettings:
        return replace(self, **changes)

    @property
    def llm_api_key_is_set(self) -> bool:
        api_key = getattr(getattr(self.agent_settings, "llm", None), "api_key", None)
        return api_key is not None and bool(api_key.get_secret_value().strip())


def _defaults() -> ServerSettings:
    from openhands.sdk.settings import ConversationSettings, default_agent_settings

    return ServerSettings(default_agent_settings(), ConversationSettings())


def _decode(data: dict[str, Any], cipher: Cipher) -> ServerSettings:
    from openhands.sdk.settings import ConversationSettings, validate_agent_settings

    secrets: dict[str, StoredSecret] = {}
    for name, item in (data.get("secrets") or {}).items():
        value = cipher.decrypt(item["value"])
        if value is None:
            raise SettingsUnreadable(f"secret {name!r} does not decrypt with the server secret")
        secrets[name] = StoredSecret(value.get_secret_value(), item.get("description"))
    context = {"cipher": cipher, "strict_decrypt": True}
    return ServerSettings(
        agent_settings=validate_agent_settings(
            data.get("agent_settings") or {}, context=context, persisted=True
        ),
        conversation_settings=ConversationSettings.from_persisted(
            data.get("conversation_settings") or {}
        ),
        misc_settings=dict(data.get("misc_settings") or {}),
        active_profile=data.get("active_profile"),
        active_agent_profile_id=data.get("active_agent_profile_id"),
        active_meta_profile=data.get("active_meta_profile"),
        secrets=secrets,
    )


def _encode(settings: ServerSettings, cipher: Cipher) -> dict[str, Any]:
    from pydantic import SecretStr

    return {
        "file_version": FILE_VERSION,
        # A cipher in the context makes the SDK's serializers encrypt every secret field.
        "agent_settings": settings.agent_settings.model_dump(
            mode="json", context={"cipher": cipher}
        ),
        "conversation_settings": settings.conversation_settings.model_dump(mode="json"),
        "misc_settings": settings.misc_settings,
        "active_profile": settings.active_profile,
        "active_agent_profile_id": settings.active_agent_profile_id,
        "active_meta_profile": settings.active_meta_profile,
        "secrets": {
            name: {
                "value": cipher.encrypt(SecretStr(secret.value)),
                "description": secret.description,
            }
            for name, secret in settings.secrets.items()
        },
    }


def _blocking_read(path: Path, cipher: Cipher) -> ServerSettings:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _defaults()
    except OSError as error:
        raise SettingsUnreadable(f"{path}: {error.strerror}") from None
    return _parse(text, cipher, str(path))


def _parse_shared(content: bytes | None, cipher: Cipher) -> ServerSettings:
    if content is None:
        return _defaults()
    return _parse(content.decode(errors="replace"), cipher, "the database's settings.json")


def _parse(text: str, cipher: Cipher, path: str) -> ServerSettings:
    try:
        return _decode(json.loads(text), cipher)
    except SettingsUnreadable:
        raise
    except Exception as error:  # never echo the content: it holds ciphertexts
        raise SettingsUnreadable(f"{path} is not a settings file: {type(error).__name__}") from None


class SettingsStore:
    """settings.json and the profile stores, for the routes (one per app)."""

    def __init__(self, conversations_dir: Path, configured_secret: str | None) -> None:
        self.path = conversations_dir / SETTINGS_FILE
        self._conversations_dir = conversations_dir
        self._configured_secret = configured_secret
        self._cipher: Cipher | None = None
        self._lock = trio.Lock()
        self.profiles = ProfileStores(conversations_dir / PROFILES_DIR)
        self._shared: BlobStore | None = None

    @property
    def shared(self) -> BlobStore | None:
        """The shared database's documents, when the server uses one (set at its start):
        the settings, the secrets and the profiles are kept there."""
        return self._shared

    @shared.setter
    def shared(self, blobs: BlobStore | None) -> None:
        self._shared = self.profiles.shared = blobs

    async def cipher(self) -> Cipher:
        """The SDK cipher over the server secret (the key file is created on first use)."""
        if self._cipher is None:
            from openhands.sdk.utils.cipher import Cipher

            secret = await trio.to_thread.run_sync(
                file_store.load_or_create_secret, self._conversations_dir, self._configured_secret
            )
            self._cipher = Cipher(secret_key=secret)
        return self._cipher

    async def read(self) -> ServerSettings:
        cipher = await self.cipher()
        if self.shared is not None:
            content = await self.shared.read(SETTINGS_FILE)
            return await trio.to_thread.run_sync(_parse_shared, content, cipher)
        return await trio.to_thread.run_sync(_blocking_read, self.path, cipher)

    async def update[T](self, change: Callable[[ServerSettings], tuple[ServerSettings, T]]) -> T:
        """Read, `change` (blocking, in the worker thread), write: one at a time.

        `change` returns the new settings and a result for the caller; raising leaves the
        file as it was."""
        cipher = await self.cipher()

        def read_change_write() -> T:
            current = _blocking_read(self.path, cipher)
            new, result = change(current)
            if new is not current:
                file_store.write_json_atomically(self.path, _encode(new, cipher))
            return result

        def change_document(content: bytes | None) -> tuple[bytes, T]:
            current = _parse_shared(content, cipher)
            new, result = change(current)
            if new is current:
                return cast("bytes", content), result  # the same object: nothing written
            return json.dumps(_encode(new, cipher), indent=1).encode(), result

        async with self._lock:
            if self.shared is not None:
                return await self.shared.update(SETTINGS_FILE, change_document)
            return await trio.to_thread.run_sync(read_change_write)
