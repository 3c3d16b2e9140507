"""The reference server's `/api` dialect: conversations, events, sockets, and the workspace
(bash, files, git)."""
