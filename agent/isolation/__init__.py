"""Network isolation: cut the host off, keep the responder's channel, prove it, undo it.

One module per method (``nftables``, ``iptables``, ``linkdown``, ``windows``, ``pf``,
``exec_hook``); ``engine`` runs the step inside a collection; ``state`` keeps what
``preserve release`` needs on the kit."""
