"""The shared PostgreSQL store (issue 14): several server instances over one database.

One module per concept: `database` (pools in worker threads, migration at open), `schema`
(the versioned tables), `leases` (who owns a conversation, fenced by a token),
`heartbeat` (the task renewing an instance's leases),
`instances` (the live instances' addresses, to forward to an owner), `fencing`
(the check every owner's write makes), `locks` (advisory locks across processes),
`catalog`, `events`, `blobs` and `sdk_files` (the stores over the tables),
`sdk_file_store` (the SDK's FileStore over `sdk_files`: it imports the SDK, so import it
only once the SDK is loaded) and `notify` (LISTEN/NOTIFY wake-ups handed to Trio).
"""
