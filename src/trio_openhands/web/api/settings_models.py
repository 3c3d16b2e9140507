"""Request and answer shapes of the server-held configuration: settings, secrets, LLM and
agent profiles, the LLM catalog (the reference's shapes; SDK objects stay dicts here, as
the SDK loads in the background)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trio_openhands.core.agent_settings import PROFILE_NAME
from trio_openhands.web.response_bodies import BinaryBody

# The SDK's own rules (its llm_profile_store, its settings API models).
SECRET_NAME = r"^[a-zA-Z][a-zA-Z0-9_]{0,63}$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
POINTERS = ("active_profile", "active_agent_profile_id", "active_meta_profile")

# -- requests ------------------------------------------------------------------------------


class SettingsPatch(BaseModel):
    """`PATCH /api/settings`: diffs merged into the stored settings (a null inside a nested
    map deletes that entry), and the active pointers (null clears one)."""

    agent_settings_diff: dict[str, Any] | None = None
    conversation_settings_diff: dict[str, Any] | None = None
    misc_settings_diff: dict[str, Any] | None = None
    active_profile: str | None = Field(default=None, pattern=PROFILE_NAME)
    active_agent_profile_id: str | None = Field(default=None, pattern=UUID_PATTERN)
    active_meta_profile: str | None = Field(default=None, pattern=PROFILE_NAME)

    def changes(self) -> dict[str, Any]:
        """What was given: the diffs that are not null, and every pointer that was set."""
        given = self.model_dump(exclude_unset=True)
        return {k: v for k, v in given.items() if v is not None or k in POINTERS}


class SecretCreate(BaseModel):
    """`PUT /api/settings/secrets`: create or replace one custom secret."""

    name: str = Field(pattern=SECRET_NAME)
    value: str = Field(min_length=1, json_schema_extra={"writeOnly": True})
    description: str | None = Field(default=None, max_length=1024)


class SecretsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_profile_id: str | None = None


class SaveProfile(BaseModel):
    """`POST /api/profiles/{name}`: the SDK's LLM settings; the key kept unless asked not to."""

    llm: dict[str, Any]
    include_secrets: bool = True


class ValidateProfile(BaseModel):
    llm: dict[str, Any]


class RenameProfile(BaseModel):
    new_name: str = Field(min_length=1, max_length=64, pattern=PROFILE_NAME)


class ModelsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str | None = None


# -- answers -------------------------------------------------------------------------------


class SettingsBody(BaseModel):
    """The stored settings; secrets redacted unless `X-Expose-Secrets` asks for them
    (`encrypted`: Fernet tokens of the server secret, `plaintext`: the values)."""

    agent_settings: dict[str, Any]
    conversation_settings: dict[str, Any]
    llm_api_key_is_set: bool
    active_profile: str | None
    active_agent_profile_id: str | None
    active_meta_profile: str | None
    misc_settings: dict[str, Any]


class SettingsSchema(BaseModel):
    """The SDK's settings schema: the sections and fields a UI draws its forms from."""

    model_config = ConfigDict(extra="allow")

    model_name: str
    sections: list[dict[str, Any]]


class SecretItem(BaseModel):
    """A custom secret, without its value."""

    name: str
    description: str | None


class SecretsList(BaseModel):
    """The custom secrets' names and descriptions; never their values."""

    secrets: list[SecretItem]


class SecretValue(BinaryBody):
    """The secret's value, as text (what an SDK `LookupSecret` fetches)."""

    media_types = ("text/plain",)


class Deleted(BaseModel):
    """Gone."""

    deleted: bool


class ProfileInfo(BaseModel):
    """An LLM profile in a listing: whether it has a key, never the key."""

    name: str
    model: str | None = None
    base_url: str | None = None
    provider_connection_id: str | None = None
    provider_connection_broken: bool = False
    api_key_set: bool = False


class ProfileList(BaseModel):
    """The LLM profiles by name, and the active one."""

    profiles: list[ProfileInfo]
    active_profile: str | None


class ProfileDetail(BaseModel):
    """One LLM profile; its key null unless `X-Expose-Secrets` asks for it."""

    name: str
    config: dict[str, Any]
    api_key_set: bool


class ProfileMutation(BaseModel):
    """Done: the profile's name (the new one after a rename) and what happened."""

    name: str
    message: str


class ProfileActivated(BaseModel):
    """Activated; `llm_applied` says whether it became the agent settings' LLM."""

    name: str
    message: str
    llm_applied: bool


class ValidationProblem(BaseModel):
    """Why the check failed: the error's type and message (secrets redacted)."""

    type: str
    message: str


class ProfileValidation(BaseModel):
    """Whether one completion with these LLM settings succeeded (rate limits and timeouts
    count as valid: they say nothing about the settings)."""

    valid: bool
    error: ValidationProblem | None = None


class AgentProfileList(BaseModel):
    """The agent profiles (summaries) and the active one's id."""

    model_config = ConfigDict(extra="allow")

    profiles: list[dict[str, Any]]
    active_agent_profile_id: str | None


class AgentProfileDetail(BaseModel):
    """One agent profile, as the SDK's `AgentProfile` serializes."""

    name: str
    profile: dict[str, Any]


class MaterializeAgentProfile(BaseModel):
    """`POST /api/agent-profiles/{name}/materialize`: a draft to preview instead of the
    stored profile (the path's name wins over the draft's)."""

    model_config = ConfigDict(extra="forbid")

    profile: dict[str, Any] | None = None


class AgentProfileDiagnostics(BaseModel):
    """The SDK's report of what launching the profile would build: what resolved, what
    dangles, which tools cannot run here; `resolved_settings` (redacted) when `valid`."""

    model_config = ConfigDict(extra="allow")

    agent_kind: str
    valid: bool
    errors: list[str]
    unusable_tools: list[str]
    resolved_settings: dict[str, Any] | None = None


class AgentProfileActivated(BaseModel):
    """The pointer moved; the agent settings did not change."""

    id: str
    message: str
    agent_settings_applied: bool


class Providers(BaseModel):
    """Provider names, sorted."""

    providers: list[str]


class Models(BaseModel):
    """Model names, sorted."""

    models: list[str]


class VerifiedModels(BaseModel):
    """Verified model names by provider."""

    models: dict[str, list[str]]
