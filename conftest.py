"""Test harness settings that hold for every test run, also plain `pytest`.

DDS discovery stays on loopback and every run gets its own ROS domain, so that concurrent runs
(and other machines) never see each other. Nothing may reach a model hub.
"""

import os

from convitac_ros.ros.node_process import loopback_dds

# A private domain per run: derived from the pid, inside the range valid on every platform.
loopback_dds(int(os.environ.setdefault('CONVITAC_TEST_DOMAIN_ID', str(1 + os.getpid() % 100))))
os.environ.setdefault('OMP_NUM_THREADS', '2')
