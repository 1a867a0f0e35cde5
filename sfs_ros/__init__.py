"""sfs_ros: the ROS 2 adapter around :mod:`sfs_core` (node, conversions, messages, diagnostics).

The generated message classes live in ``sfs_ros.msg``, which exists only in the colcon-installed
copy of this package (``source install/setup.bash``). ``extend_path`` merges every ``sfs_ros``
folder on ``sys.path`` into this package, so ``sfs_ros.msg`` resolves even when the source tree
happens to come first on the path (``python -m pytest`` from the repository root).
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
