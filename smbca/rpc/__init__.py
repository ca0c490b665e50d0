"""DCE/RPC pieces both RPC servers use: the connection-oriented core
(``dcerpc``), the NDR codec (``ndr``) and the NTLM security provider
(``ntlm_security``).  ``dcerpc`` and ``ndr`` are sans-I/O and import the
standard library only."""
