"""convitac_ros.tools."""
