"""sfs_core: Semantic-Fast-SAM as a ROS-free library (models, pipeline, fusion, CLI)."""

__version__ = "0.1.0"
