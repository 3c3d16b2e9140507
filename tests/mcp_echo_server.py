"""A stdio MCP server for tests/test_mcp.py: one tool, `echo`, run as a real process."""

from mcp.server.fastmcp import FastMCP

server = FastMCP("echo")


@server.tool()
def echo(text: str) -> str:
    """Say it back."""
    return f"echo: {text}"


if __name__ == "__main__":
    server.run()
