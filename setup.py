"""pip-installable ROS-free part of sfs_ros: the sfs_core library and the `sfs` CLI.

The ROS 2 package (messages, node, launch) is built with colcon from package.xml/CMakeLists.txt.
"""

from glob import glob

from setuptools import find_packages, setup

setup(
    name="sfs-core",
    version="0.1.0",
    description="Semantic-Fast-SAM: real-time semantic segmentation of everything (ROS-free core and CLI)",
    license="AGPL-3.0-only",
    python_requires=">=3.10",
    packages=find_packages(include=["sfs_core", "sfs_core.*"]),
    install_requires=[
        "torch", "torchvision", "ultralytics-opencv-headless", "opencv-python-headless", "transformers",
        "open_clip_torch", "numpy", "scipy", "safetensors", "pyyaml", "pillow", "rosbags", "tqdm", "matplotlib", "psutil",
    ],
    data_files=[("share/sfs_ros/msg", sorted(glob("msg/*.msg")))],  # for `sfs replay` bag writing
    entry_points={"console_scripts": ["sfs = sfs_core.cli:main"]},
)
