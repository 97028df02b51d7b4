"""ConViTac visual-tactile perception for ROS 2.

Nothing in the package downloads anything: models are built from checkpoints and local weight
files only. Importing it puts every library that could reach a model hub (huggingface_hub,
which timm uses) into offline mode, also when the hub library was imported before.
"""

import os
import sys

# The one place the version is written: setup.py reads it, package.xml must match it
# (test/test_package_xml.py), checkpoints and ONNX files record it.
__version__ = '0.6.0'


def force_offline() -> None:
    """Switch huggingface_hub (read by timm) to offline mode, now and for later imports."""
    os.environ['HF_HUB_OFFLINE'] = '1'
    constants = sys.modules.get('huggingface_hub.constants')
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


force_offline()
