"""The daemon's options and the TOML settings file."""
