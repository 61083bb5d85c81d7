"""Typed settings with profiles (local, production, test): see :mod:`configs.settings`."""

from citeops.configs.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
