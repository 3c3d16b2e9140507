"""Tools for testing code that talks to an LLM, shipped with the package.

The scripted OpenAI-compatible server lives in :mod:`trio_openhands.testing.fake_llm`.
Nothing is re-exported here on purpose: ``python -m trio_openhands.testing.fake_llm``
would otherwise import the module twice (once as a package member, once as ``__main__``).
"""
