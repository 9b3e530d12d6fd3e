"""The fleet over Flower (the optional ``fleet`` extra): a client thread in the daemon
(:mod:`service.fleet.client`) and the server's strategy (:mod:`service.fleet.server`).

Flower's legacy gRPC API (``flwr.server.start_server`` / ``flwr.client.start_client``,
still shipped by flwr 1.42): the client runs inside the daemon's own process and reads the
live head under the learner's lock, which a SuperNode-launched ClientApp (another
process) could not do without a second protocol back into the daemon. What merges is in
:mod:`edgecl.fleet`; this package only carries it.
"""

import os

# Flower posts usage events to its own servers unless told not to, read once when flwr is
# imported (hence here, before any module of this package imports it): a device on a site
# network sends nothing but its head to the fleet's server. FLWR_TELEMETRY_ENABLED=1 opts in.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
