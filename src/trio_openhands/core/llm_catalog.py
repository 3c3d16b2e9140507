"""LLM settings a client sends for a profile, the one-completion check of them, and the
catalog of providers and models a UI offers: from the data litellm and the SDK ship, never
from the network (Bedrock's live listing needs AWS keys and is left out)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from trio_openhands.core.errors import ValidationFailed
from trio_openhands.core.validation import errors_from

if TYPE_CHECKING:
    from openhands.sdk import LLM
    from openhands.sdk.utils.cipher import Cipher

# The check answers within this many seconds, whatever the profile's own timeout.
PING_TIMEOUT = 15


def build_llm(data: dict[str, Any], cipher: Cipher, loc: tuple[str | int, ...]) -> LLM:
    """The SDK's LLM; a key that is a Fernet token of this server (a UI sends back what it
    read with `X-Expose-Secrets: encrypted`) is decrypted."""
    from openhands.sdk import LLM

    try:
        return LLM.model_validate(data, context={"cipher": cipher})
    except Exception as error:  # the SDK's validators raise more than ValidationError
        if isinstance(error, ValidationError):
            raise ValidationFailed(errors_from(error, loc)) from None
        raise ValidationFailed.single(
            loc, f"Invalid LLM settings: {type(error).__name__}"
        ) from None


def blocking_ping(llm: LLM) -> dict[str, Any]:
    """One 1-token completion, no retry: `{"valid": true}`, or the error's type and its
    message with secrets redacted. Rate limits and timeouts say nothing about the settings
    and count as valid, unless the provider says the quota is exhausted."""
    from openhands.sdk import Message, TextContent
    from openhands.sdk.llm.exceptions import (
        LLMError,
        LLMRateLimitError,
        LLMTimeoutError,
        is_quota_exhaustion_error,
    )
    from openhands.sdk.utils.redact import redact_text_secrets

    timeout = min(llm.timeout or PING_TIMEOUT, PING_TIMEOUT)
    probe = llm.model_copy(update={"num_retries": 0, "timeout": timeout, "fallback_strategy": None})
    messages = [
        Message(role="system", content=[TextContent(text="Reply with one token.")]),
        Message(role="user", content=[TextContent(text="ping")]),
    ]
    try:
        if probe.uses_responses_api():
            probe.responses(messages=messages, max_tokens=1)
        else:
            probe.completion(messages=messages, max_tokens=1)
    except (LLMRateLimitError, LLMTimeoutError) as error:
        if not is_quota_exhaustion_error(error):
            return {"valid": True, "error": None}
        return _invalid(error, redact_text_secrets(error.message))
    except LLMError as error:
        return _invalid(error, redact_text_secrets(error.message))
    except Exception as error:  # the provider's own failure, shown to the user
        return _invalid(error, redact_text_secrets(str(error) or type(error).__name__))
    return {"valid": True, "error": None}


def _invalid(error: BaseException, message: str) -> dict[str, Any]:
    return {"valid": False, "error": {"type": type(error).__name__, "message": message}}


@functools.cache
def providers() -> list[str]:
    from openhands.sdk.llm.utils.unverified_models import (
        _get_litellm_provider_names,  # pyright: ignore[reportPrivateUsage]
    )

    return sorted(_get_litellm_provider_names())


@functools.cache
def _all_models() -> tuple[str, ...]:
    from openhands.sdk.llm.utils.unverified_models import get_supported_llm_models

    return tuple(sorted(set(get_supported_llm_models())))


def models(provider: str | None) -> list[str]:
    """Every model litellm knows, or a provider's: those litellm files under it, and the
    SDK's verified ones for it (unless the name resolves to another provider)."""
    from openhands.sdk.llm.utils.unverified_models import (
        _extract_model_and_provider,  # pyright: ignore[reportPrivateUsage]
    )
    from openhands.sdk.llm.utils.verified_models import VERIFIED_MODELS

    if provider is None:
        return list(_all_models())
    verified = set(VERIFIED_MODELS.get(provider, ()))
    chosen: set[str] = set()
    for model in _all_models():
        found, _, _ = _extract_model_and_provider(model)
        if found == provider or (
            model in verified and not ("/" in model and found and found != provider)
        ):
            chosen.add(model)
    return sorted(chosen)


def verified_models() -> dict[str, list[str]]:
    from openhands.sdk.llm.utils.verified_models import VERIFIED_MODELS

    return {provider: list(names) for provider, names in VERIFIED_MODELS.items()}
