"""The fleet over Flower (the optional ``fleet`` extra): a client thread in the daemon
(:mod:`service.fleet.client`) and the server's strategy (:mod:`service.fleet.server`).

Flower's legacy gRPC API (``flwr.server.start_server`` / ``flwr.client.start_client``,
still shipped by flwr 1.42): the client runs inside the daemon's own process and reads the
live head under the learner's lock, which a SuperNode-launched ClientApp (another
process) could not do without a second protocol back into the daemon. What merges is in
:mod:`edgecl.fleet`; this package only carries it.
"""
