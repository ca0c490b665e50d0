"""witnessd: MS-SWN (Service Witness Protocol) server for smbca clusters."""
