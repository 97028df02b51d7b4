"""convitac_ros.ros."""
