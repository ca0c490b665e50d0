"""smbca: continuously-available SMB 3 file server."""
