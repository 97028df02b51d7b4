"""Setup for the convitac_ros ament_python package (also installs with plain pip)."""

from glob import glob
from pathlib import Path
import re

from setuptools import find_packages, setup

PACKAGE = 'convitac_ros'
# convitac_ros/__init__.py holds the version (read, not imported: setup runs before the
# dependencies exist).
VERSION = re.search(r"^__version__ = '([^']+)'$",
                    (Path(__file__).parent / PACKAGE / '__init__.py').read_text(),
                    re.M).group(1)

setup(
    name=PACKAGE,
    version=VERSION,
    # training/ is installed beside the product so that `python training/train.py` finds its
    # package; nothing in convitac_ros imports it (test/test_package.py). benchmarks/ is not
    # installed: it runs from a source checkout as `python -m benchmarks`.
    packages=find_packages(include=[PACKAGE, PACKAGE + '.*', 'training']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml') + glob('config/*.xml')),
        ('share/' + PACKAGE + '/config/sensors', glob('config/sensors/*.yaml')),
        ('share/' + PACKAGE + '/models', glob('models/*.safetensors') + glob('models/*.md')),
    ],
    package_data={PACKAGE: ['py.typed'], 'training': ['configs/*.yaml']},
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='convitac_ros maintainers',
    maintainer_email='convitac-ros@example.com',
    description='ConViTac visual-tactile perception for ROS 2.',
    license='MIT',
    extras_require={'test': ['pytest', 'hypothesis']},
    entry_points={
        'console_scripts': [
            'convitac_node = convitac_ros.ros.node:run',
            'convitac_make_bag = convitac_ros.bags.make_bag:main',
            'convitac_replay = convitac_ros.bags.replay:main',
            'convitac_evaluate = convitac_ros.evaluation.offline:main',
            'convitac_export = convitac_ros.export:main',
            'convitac_label = convitac_ros.bags.contact_episodes:main',
            'convitac_make_dataset = convitac_ros.bags.make_dataset:main',
            'convitac_topic = convitac_ros.ros.topic_tool:main',
        ],
    },
)
