"""The core: the supervisor, its conversations and their event logs, and the bridge to the SDK.

Nothing here knows HTTP; the web layer calls it."""
