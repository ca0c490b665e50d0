"""One module per SMB2 command: decode and validate, operate through ports, encode."""
