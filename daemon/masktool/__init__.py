"""masktool: keep systemd units masked or unmasked as a policy declares, and prove it."""

__version__ = "0.1.0"
