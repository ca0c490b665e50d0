"""The SMB2/3 server: connection core, dispatcher and one module per command."""
