"""Rosbag2 files: write datasets as bags, read and pair them, replay them into a node."""
