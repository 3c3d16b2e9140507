"""The seed dialect: `/conversations/...` and its event socket."""
