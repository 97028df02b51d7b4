"""Rosbag2 files: read, write, pair and replay bags; a team's recordings.

Topic mapping, labels files, a labelling helper and bag -> dataset for recordings made with
`ros2 bag record`.
"""
