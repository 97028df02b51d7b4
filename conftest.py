"""Test harness settings that hold for every test run, also plain `pytest`.

DDS discovery stays on loopback and every run gets its own ROS domain, so that concurrent runs
(and other machines) never see each other. Nothing may reach a model hub.
"""

import os

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
if os.environ.get('ROS_DISTRO') == 'humble':  # Humble predates the discovery range.
    os.environ['ROS_LOCALHOST_ONLY'] = '1'
# A private domain per run: derived from the pid, inside the range valid on every platform.
os.environ.setdefault('CONVITAC_TEST_DOMAIN_ID', str(1 + os.getpid() % 100))
os.environ['ROS_DOMAIN_ID'] = os.environ['CONVITAC_TEST_DOMAIN_ID']
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ.setdefault('OMP_NUM_THREADS', '2')
