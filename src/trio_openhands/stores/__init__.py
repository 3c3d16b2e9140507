"""Where conversations are kept: today the conversations directory (files)."""
