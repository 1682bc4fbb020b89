"""Helpers the tests share: fake Apple, the emulator, token calls, browser sign-in, row counts."""
