"""Start convitac_node with config/convitac.yaml and a few overrides.

    ros2 launch convitac_ros convitac.launch.py
    ros2 launch convitac_ros convitac.launch.py checkpoint:=/path/model.safetensors \
        device:=cuda namespace:=left_hand camera_topic:=/wrist_cam/image_raw \
        tactile_topic:=/digit/image_raw

Every other parameter comes from ``params_file`` (default: the installed convitac.yaml).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    'params_file': (PathJoinSubstitution([FindPackageShare('convitac_ros'), 'config',
                                          'convitac.yaml']),
                    'Parameter file of convitac_node.'),
    'checkpoint': ('', 'Checkpoint (.safetensors) or ONNX export (.onnx); empty: the '
                       'installed demo checkpoint.'),
    'device': ('auto', 'Inference device: auto, cpu, cuda or cuda:N.'),
    'namespace': ('', 'Namespace of the node (and of its relative input topics).'),
    'camera_topic': ('camera/image_raw', 'Camera image topic.'),
    'tactile_topic': ('tactile/image_raw', 'Tactile sensor image topic.'),
    'tactile_b_topic': ('tactile_b/image_raw', 'Second tactile sensor (two-sensor models).'),
}
# Input name inside the node -> launch argument giving the real topic.
REMAPS = {'camera/image_raw': 'camera_topic', 'tactile/image_raw': 'tactile_topic',
          'tactile_b/image_raw': 'tactile_b_topic'}


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the node."""
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    remappings = []
    for name, argument in REMAPS.items():
        topic = LaunchConfiguration(argument)
        remappings += [(name, topic), (f'{name}/compressed', [topic, '/compressed'])]
    node = Node(
        package='convitac_ros',
        executable='convitac_node',
        name='convitac_node',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'),
                    {'checkpoint': LaunchConfiguration('checkpoint'),
                     'device': LaunchConfiguration('device')}],
        remappings=remappings,
        output='screen',
        emulate_tty=True,
    )
    return LaunchDescription([*declared, node])
