"""The materials of the synthetic world and why they make a fair visual-tactile test.

Four looks (grey speckle, white gloss, brown grain, green blotch) and four feels (hard rough,
hard smooth, soft smooth, soft rough) are paired in a cycle, so every look is shared by two
materials that feel different and every feel by two materials that look different:

    look / feel     hard rough   hard smooth   soft smooth   soft rough
    grey speckle    Concrete     Metal
    white gloss                  Plastic       Paper
    brown grain                                Leather       Synthetic Fabric
    green blotch    Rock                                     Grass

A vision-only model can at best tell the look (1 of 2 materials), a touch-only model the feel
(1 of 2): both are capped near 50% on the 8-way material task, while fusion can reach the
Bayes limit set by the noise. The names are Touch and Go classes, so the dataset's hard/soft rule
(by name: Leather, Synthetic Fabric, Paper, Grass are soft) agrees with the feel.
"""

from dataclasses import dataclass

from convitac_ros.data.synthetic.render import Feel, Look

LOOKS = {
    'grey speckle': Look(colour=(0.52, 0.52, 0.53), pattern='speckle', texture=0.22, gloss=0.05),
    'white gloss': Look(colour=(0.80, 0.78, 0.72), pattern='plain', texture=0.10, gloss=0.55),
    'brown grain': Look(colour=(0.55, 0.37, 0.22), pattern='grain', texture=0.20, gloss=0.25),
    'green blotch': Look(colour=(0.33, 0.48, 0.25), pattern='blotch', texture=0.25, gloss=0.0),
}
FEELS = {
    'hard rough': Feel(soft=False, rough=True, pattern='grit', frequency=(0.16, 0.26),
                       amplitude=(0.30, 0.45)),
    'hard smooth': Feel(soft=False, rough=False, pattern='flat', frequency=(0.03, 0.06),
                        amplitude=(0.02, 0.06)),
    'soft smooth': Feel(soft=True, rough=False, pattern='flat', frequency=(0.03, 0.06),
                        amplitude=(0.02, 0.08)),
    'soft rough': Feel(soft=True, rough=True, pattern='ridges', frequency=(0.10, 0.16),
                       amplitude=(0.35, 0.55)),
}


@dataclass(frozen=True)
class Material:
    """A material class: its name, how it looks and how it feels."""

    name: str
    look: str
    feel: str


MATERIALS = (
    Material('Concrete', 'grey speckle', 'hard rough'),
    Material('Metal', 'grey speckle', 'hard smooth'),
    Material('Plastic', 'white gloss', 'hard smooth'),
    Material('Paper', 'white gloss', 'soft smooth'),
    Material('Leather', 'brown grain', 'soft smooth'),
    Material('Synthetic Fabric', 'brown grain', 'soft rough'),
    Material('Grass', 'green blotch', 'soft rough'),
    Material('Rock', 'green blotch', 'hard rough'),
)


def tactile_twin(index: int) -> int:
    """Index of the other material with the same feel (it looks different)."""
    feel = MATERIALS[index].feel
    return next(i for i, m in enumerate(MATERIALS) if m.feel == feel and i != index)
