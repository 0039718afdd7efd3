"""The local control channel between the daemon and its front ends."""
