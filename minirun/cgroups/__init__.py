"""cgroups by hand: minirun writes the kernel's cgroup files itself (cgroups(7)).

- layout.py: which hierarchy (v1 or v2) serves which controller, from the mount table
- cgroup.py: one container's cgroup across those hierarchies
- v1.py, v2.py: the files each version has, side by side
- devices.py: device rules (v1 files; v2 would need eBPF)
- files.py: reading and writing cgroup files

The limits come from minirun.config.resources; docs/cgroups.md maps each
OCI field to its file.
"""

from minirun.cgroups.cgroup import Cgroup, CgroupDir
from minirun.cgroups.layout import Hierarchy, Layout, default_root, detect_layout

__all__ = ["Cgroup", "CgroupDir", "Hierarchy", "Layout", "default_root", "detect_layout"]
