"""Pose post-processing on the host: people from the candidates a pose engine returns.

- `skeleton`: keypoint names and limbs of the pose formats (COCO 17 for HigherHRNet, CMU body 18 for OpenPose)
  and the `Person` result type shared by every pose network.
- `grouping`: HigherHRNet's associative-embedding grouping (candidates matched joint by joint by tag distance).
- `paf`: OpenPose's part-affinity-field limb scoring and greedy assembly.
Only numpy (and Pillow for drawing): this package is on the build-and-run path.
"""
from netdef.pose.skeleton import COCO17, Person, Skeleton

__all__ = ["COCO17", "Person", "Skeleton"]
