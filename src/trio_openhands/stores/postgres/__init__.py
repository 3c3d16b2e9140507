"""The shared PostgreSQL store (issue 14): several server instances over one database.

One module per concept:
- `database`: the pools, used only from worker threads; the schema migrated at open;
- `schema`: the versioned tables and their migration;
- `leases`, `fencing`: who owns a conversation, and the check each of its writes makes;
- `heartbeat`: the task renewing an instance's leases; `instances`: where each one serves;
- `catalog`, `events`, `blobs`, `sdk_files`: the stores over the tables;
- `sdk_file_store`: the SDK's FileStore over `sdk_files` (it imports the SDK: import it
  only once the SDK is loaded); `locks`: the advisory locks its `lock()` holds;
- `notify`: LISTEN/NOTIFY wake-ups handed to Trio; `follow`: a reader's replay, then live.
"""
