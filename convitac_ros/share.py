"""Files installed with the package (``share/convitac_ros``): configs, the DDS profile, models.

colcon installs them under the package's ament share directory, ``pip install`` under
``<prefix>/share/convitac_ros`` (setup.py's ``data_files``), and a source checkout or editable
install has them next to the sources. No ROS import is needed to find them.
"""

from __future__ import annotations

from pathlib import Path
import sys

PACKAGE = 'convitac_ros'


def _share_directories() -> list[Path]:
    directories = []
    try:
        from ament_index_python.packages import (
            get_package_share_directory,
            PackageNotFoundError,
        )
        try:
            directories.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, ValueError, OSError):  # OSError: no AMENT_PREFIX_PATH
            pass
    except ImportError:
        pass
    directories.append(Path(sys.prefix) / 'share' / PACKAGE)
    directories.append(Path(__file__).resolve().parents[1])  # the source tree
    return directories


def share_file(*parts: str) -> Path:
    """Locate an installed file of the package (config, models, launch) by its parts.

    Returns:
        The first existing candidate (ament share directory, ``<prefix>/share``, source tree);
        the source-tree path when none exists, so that an error names a sensible place.
    """
    candidates = [directory.joinpath(*parts) for directory in _share_directories()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[-1]
