"""Messages between the worker processes of one node (docs/multicore.md):
``messages`` is the sans-IO codec, ``mailbox`` the Unix datagram socket
that carries it.  Workers message each other only for breaks, wake-ups,
durable hand-overs, cross-worker logoffs and admin listings; the shared
open state itself lives in the open-state database."""
