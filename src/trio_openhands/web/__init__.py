"""The HTTP and WebSocket surface: the app, its security and error handling, and the routes,
grouped by API family (`seed`: our own `/conversations` dialect; `api`: the reference
server's `/api` dialect and its workspace routes). Route modules stay thin over the core
and the services."""
