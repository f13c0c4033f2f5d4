"""What ``minirun features`` reports: the shape of ``runc features`` output."""

from __future__ import annotations

from minirun import OCI_VERSION, __version__


def features() -> dict:
    from minirun.capabilities import CAPABILITIES
    from minirun.config.mounts import MOUNT_OPTIONS, PROPAGATION
    from minirun.config.oci import HOOK_PHASES, NAMESPACE_TYPES

    caps = sorted(CAPABILITIES, key=CAPABILITIES.get)
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_PHASES),
        "mountOptions": sorted(list(MOUNT_OPTIONS) + list(PROPAGATION)),
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": caps,
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.minirun.version": __version__},
    }
