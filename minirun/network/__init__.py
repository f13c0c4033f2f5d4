"""Container networks, the way the classic lab builds them by hand with ``ip``.

One module per kernel object, read in this order:

- ``netns``: network namespaces as files, and sockets opened inside them;
- ``rtnl``: rtnetlink, the messages behind ``ip link / addr / route``;
- ``bridge``: the Linux bridge with the gateway address;
- ``veth``: the veth pair between the bridge and a container's ``eth0``;
- ``ipam``: which address a container gets;
- ``nat``: nftables masquerade and port forwarding;
- ``store``: the state on disk under ``ROOT/.networks``;
- ``networks``: create, remove, list networks, with their checks and rollback;
- ``attachments``: attach and detach namespaces, port forwards.

Nothing here imports pyroute2 at module level: it costs over 100 ms to import.
"""

from minirun.network.attachments import (
    add_port_forward,
    attach,
    detach,
    remove_port_forward,
)
from minirun.network.networks import (
    DEFAULT_BRIDGE,
    DEFAULT_GATEWAY,
    DEFAULT_NETWORK,
    DEFAULT_SUBNET,
    Attachment,
    Network,
    PortForward,
    create_network,
    ensure_default_network,
    get_network,
    list_networks,
    remove_network,
)

__all__ = [
    "DEFAULT_BRIDGE", "DEFAULT_GATEWAY", "DEFAULT_NETWORK", "DEFAULT_SUBNET",
    "Attachment", "Network", "PortForward",
    "add_port_forward", "attach", "create_network", "detach", "ensure_default_network",
    "get_network", "list_networks", "remove_network", "remove_port_forward",
]
