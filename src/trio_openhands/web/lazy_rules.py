"""URL rules whose URL builders are compiled when first used, not when the app is built.

For every rule it adds, werkzeug generates the source of two URL-building functions and
compiles it at once (`Rule._compile_builder`): about 0.6 ms a rule, three quarters of the
time `create_app` takes with our ~170 rules. The server builds URLs for almost none of
them (`url_for` on the docs page), so each builder is compiled on its first call instead.
Matching requests never uses them. Set as the app's `url_rule_class`, the hook Quart and
Flask offer for their rule class.
"""

from __future__ import annotations

from typing import Any

from quart.routing import QuartRule


class LazilyBuiltRule(QuartRule):
    def _compile_builder(self, append_unknown: bool = True) -> Any:
        compile_now = super()._compile_builder
        compiled: list[Any] = []  # the real builder, once compiled (a race compiles twice)

        def build(rule: LazilyBuiltRule, *args: Any, **kwargs: Any) -> Any:
            if not compiled:
                compiled.append(compile_now(append_unknown))
            return compiled[0](rule, *args, **kwargs)

        return build
