"""``minirun network``: bridges, veth pairs, addresses and NAT (docs/network.md).

Parsing and printing only; the work is in ``minirun.network``, imported by
each command when it runs so that ``minirun --help`` does not pay for it.
"""

from __future__ import annotations

import json

import click

DEFAULT_ROOT = "/run/minirun"


def _root(ctx: click.Context) -> str:
    return (ctx.obj or {}).get("root", DEFAULT_ROOT)


@click.group()
def network() -> None:
    """Networks: a bridge with a gateway address, one veth pair per namespace, NAT.

    The network "default" (bridge minirun0, 192.168.200.1/24) is made the
    first time something attaches to it.
    """


@network.command()
@click.argument("name")
@click.option("--subnet", required=True, help="IPv4 subnet in CIDR notation, like 10.88.0.0/24.")
@click.option("--gateway", default=None, help="The bridge's address (default: first host).")
@click.option("--bridge", default=None, help="Bridge name, at most 15 characters "
              "(default: mr-NAME).")
@click.option("--nat", is_flag=True, help="Masquerade outbound traffic; allow -p port forwards.")
@click.pass_context
def create(ctx: click.Context, name: str, subnet: str, gateway: str | None,
           bridge: str | None, nat: bool) -> None:
    """Make network NAME: its bridge, gateway address and (with --nat) NAT rules."""
    from minirun.network import create_network

    made = create_network(_root(ctx), name, subnet, gateway=gateway, bridge=bridge, nat=nat)
    click.echo(made.name)


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print names only.")
@click.pass_context
def ls(ctx: click.Context, quiet: bool) -> None:
    """List networks."""
    from minirun.network import list_networks

    networks = list_networks(_root(ctx))
    if quiet:
        for net in networks:
            click.echo(net.name)
        return
    rows = [("NAME", "SUBNET", "GATEWAY", "BRIDGE", "NAT", "ATTACHED")]
    rows += [(n.name, n.subnet, n.gateway, n.bridge, "yes" if n.nat else "no",
              str(len(n.attachments))) for n in networks]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@network.command()
@click.argument("name")
@click.pass_context
def inspect(ctx: click.Context, name: str) -> None:
    """Print network NAME and its attachments as JSON."""
    from minirun.network import get_network

    click.echo(json.dumps(get_network(_root(ctx), name).to_dict(), indent=2))


@network.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove networks (refused while namespaces are attached)."""
    from minirun.network import remove_network

    for name in names:
        remove_network(_root(ctx), name)


@network.command()
@click.argument("name")
@click.option("--netns", "netns", required=True,
              help="The namespace: a file like /run/netns/x or /proc/PID/ns/net, or a PID.")
@click.option("--id", "owner", default=None,
              help="Who owns the attachment (container or pod ID; default: the netns path).")
@click.option("-p", "--publish", "ports", multiple=True, metavar="HOST:CONTAINER[/PROTO]",
              help="Forward a host port to the namespace (network needs --nat).")
@click.pass_context
def attach(ctx: click.Context, name: str, netns: str, owner: str | None,
           ports: tuple[str, ...]) -> None:
    """Wire a network namespace to network NAME: veth, eth0, address, default route."""
    from dataclasses import asdict

    from minirun.network import PortForward
    from minirun.network import attach as attach_netns

    forwards = [PortForward.parse(spec) for spec in ports]
    made = attach_netns(_root(ctx), name, netns, owner=owner, ports=forwards)
    click.echo(json.dumps(asdict(made), indent=2))


@network.command()
@click.argument("name")
@click.option("--netns", "netns", default=None,
              help="The namespace file or PID it was attached by.")
@click.option("--id", "owner", default=None, help="The owner given to attach.")
@click.pass_context
def detach(ctx: click.Context, name: str, netns: str | None, owner: str | None) -> None:
    """Undo attach: port forwards, the veth pair, the address lease."""
    from minirun.network import detach as detach_netns

    if (netns is None) == (owner is None):
        raise click.UsageError("give exactly one of --netns and --id")
    detach_netns(_root(ctx), name, owner=owner, netns=netns)


@click.group()
def netns() -> None:
    """Named network namespaces in /run/netns, as `ip netns` makes them."""


@netns.command(name="add")
@click.argument("name")
def netns_add(name: str) -> None:
    """Make an empty network namespace /run/netns/NAME (with lo up)."""
    from minirun.network.netns import add_named_netns

    click.echo(add_named_netns(name))


@netns.command(name="rm")
@click.argument("name")
def netns_rm(name: str) -> None:
    """Remove /run/netns/NAME (the namespace lives on while a process is in it)."""
    from minirun.network.netns import remove_named_netns

    remove_named_netns(name)


@netns.command(name="ls")
def netns_ls() -> None:
    """List /run/netns."""
    from minirun.network.netns import list_named_netns

    for name in list_named_netns():
        click.echo(name)
