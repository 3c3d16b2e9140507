"""The SDK's LLM, agent and meta-profile stores, used one operation at a time
(`ProfileStores.use`, `use_meta`, `use_all`).

The server always goes through the SDK's own stores: their file format (one JSON file per
profile, keys encrypted with the server secret), their validation, limits and the reference
checks between the two kinds. Without a database they keep their files in
`<conversations_dir>/.profiles/{llm,agent,meta}/`, as ever.

With the shared database (`shared`, a `BlobStore`) every instance must see the same
profiles, so the files are documents of the database
(`profiles/{llm,agent,meta}/<name>.json`, the bytes the SDK wrote) and `.profiles/` is only
this instance's mirror of them. Each `use` is one transaction that keeps every other
instance's `use` out: the mirror is made what the database holds, the SDK's operation runs
on it, and what it changed is written back (the files it removed deleted). So an operation
sees every change committed before it, on any instance, and one that fails writes nothing to
the database (the mirror is put right at the next `use`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from openhands.sdk.llm.llm_profile_store import LLMProfileStore
    from openhands.sdk.llm.meta_profile_store import MetaProfileStore
    from openhands.sdk.profiles import AgentProfileStore

    from trio_openhands.stores.postgres.blobs import BlobStore

    type Stores = tuple[LLMProfileStore, AgentProfileStore, MetaProfileStore]

PROFILES_DIR = ".profiles"  # in the conversations directory
PREFIX = "profiles/"
KINDS = ("llm", "agent", "meta")  # the three stores' directories under the base


def llm_profiles_dir(conversations_dir: Path) -> Path:
    """Where the LLM profiles are: what a conversation's SDK reads to switch to one (its
    agent's `switch_llm` and `route_task_to_model` tools), as `use` reads and writes them.
    With the shared database, this instance's mirror, as of its last profile operation."""
    return conversations_dir / PROFILES_DIR / "llm"


class ProfileStores:
    """The SDK's profile stores over `base` (`.profiles/`), shared once `shared` is set."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.shared: BlobStore | None = None
        self._stores: Stores | None = None

    async def use[T](self, operation: Callable[[LLMProfileStore, AgentProfileStore], T]) -> T:
        """`operation(llm_profiles, agent_profiles)`, blocking code run in a worker thread:
        the SDK stores' methods, as many as one consistent operation needs."""
        return await self.use_all(lambda llm, agent, _: operation(llm, agent))

    async def use_meta[T](self, operation: Callable[[MetaProfileStore], T]) -> T:
        """`operation(meta_profiles)`, as `use` runs its operations."""
        return await self.use_all(lambda _, __, meta: operation(meta))

    async def use_all[T](
        self, operation: Callable[[LLMProfileStore, AgentProfileStore, MetaProfileStore], T]
    ) -> T:
        """`operation(llm_profiles, agent_profiles, meta_profiles)`: one operation over the
        three (with the shared database, one transaction)."""
        if self._stores is None:
            self._stores = await trio.to_thread.run_sync(self._blocking_open)
        stores = self._stores
        if self.shared is None:
            return await trio.to_thread.run_sync(operation, *stores)

        def on_the_mirror(documents: dict[str, bytes]) -> tuple[dict[str, bytes], T]:
            _blocking_mirror(self.base, documents)
            result = operation(*stores)
            return _blocking_documents(self.base), result

        return await self.shared.update_all(PREFIX, on_the_mirror)

    def _blocking_open(self) -> Stores:
        from openhands.sdk.llm.llm_profile_store import LLMProfileStore
        from openhands.sdk.llm.meta_profile_store import MetaProfileStore
        from openhands.sdk.profiles import AgentProfileStore

        return (
            LLMProfileStore(self.base / "llm"),
            AgentProfileStore(self.base / "agent"),
            MetaProfileStore(self.base / "meta"),
        )


def _blocking_mirror(base: Path, documents: dict[str, bytes]) -> None:
    """Make each store's profile files exactly the database's documents."""
    for kind in KINDS:
        directory = base / kind
        prefix = f"{PREFIX}{kind}/"
        wanted = {
            name.removeprefix(prefix): content
            for name, content in documents.items()
            if name.startswith(prefix) and "/" not in name.removeprefix(prefix)
        }
        for path in directory.glob("*.json"):  # what the SDK lists: its lock files stay
            if path.name not in wanted:
                path.unlink()
        if wanted:  # a store this instance has not opened yet has no directory
            directory.mkdir(parents=True, exist_ok=True)
        for file_name, content in wanted.items():
            path = directory / file_name
            if not path.exists() or path.read_bytes() != content:
                path.write_bytes(content)


def _blocking_documents(base: Path) -> dict[str, bytes]:
    return {
        f"{PREFIX}{kind}/{path.name}": path.read_bytes()
        for kind in KINDS
        for path in sorted((base / kind).glob("*.json"))
    }
