"""The daemon's command poller: one long poll at a time, one command at a time per host."""
