"""Sans-IO SMB2/3 message codecs: bytes in, typed frozen messages out, and back.

Imports the standard library only (shared/STYLE.md layering rules).
"""
