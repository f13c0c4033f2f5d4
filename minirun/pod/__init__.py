"""Pods: what the kubelet and containerd compute before any container starts.

- qos.py: QoS class, cgroup names, cpu shares / quota, memory and huge page
  limits, oom_score_adj, each the kubelet function it mirrors;
- node.py: the node's capacity and allocatable, and pod admission;
- images.py: ``image:`` names to local root filesystems;
- bundle.py: a Pod's containers as OCI config.json dicts for the runtime.

The manifest itself is parsed by minirun.config.pod; docs/pods.md has it all.
"""
