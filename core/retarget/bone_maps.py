"""Bone names of the common skeletons, mapped onto one set of semantic joints.

Every skeleton we read or drive (CMU BVH in its two namings, Mixamo, Rokoko, Unity/VRM
humanoid, SMPL/SMPL-X, and the anny rigs mixamo, game_engine, cmu_mb and makehuman) is a
`Layout`: bone name -> semantic joint (`hips`, `spine`, `left_upper_arm`, ...). Two skeletons
are paired through their semantic joints, so N layouts need N tables, not N².

Names are compared after `name_key`: namespace (`mixamorig:`, `Armature|`) and SMPL's
`m_avg_` prefixes dropped, case and separators ignored. The same word can mean different
bones in different layouts (Mixamo's `LeftShoulder` is the clavicle, CMU's and SMPL's the
upper arm): detection scores whole layouts, never single names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SIDES = ("left", "right")
FINGERS = ("thumb", "index", "middle", "ring", "little")

SEMANTIC_JOINTS: tuple[str, ...] = (
    "hips", "spine", "chest", "upper_chest", "neck", "upper_neck", "head", "head_end", "jaw",
    *(f"{s}_{j}" for s in SIDES for j in (
        "eye", "pelvis", "upper_leg", "lower_leg", "foot", "toes", "toes_end",
        "shoulder", "upper_arm", "lower_arm", "hand", "palm", "hand_end",
        *(f"{f}{k}" for f in FINGERS for k in (1, 2, 3)),
    )),
)  # fmt: skip
"""The joints every layout is mapped onto (Unity/VRM humanoid words, person's own sides)."""

CORE_JOINTS: tuple[str, ...] = (
    "hips", "spine", "head",
    *(f"{s}_{j}" for s in SIDES for j in (
        "upper_leg", "lower_leg", "foot", "upper_arm", "lower_arm", "hand",
    )),
)  # fmt: skip
"""Joints a skeleton needs for a whole-body retarget; detection scores their coverage."""

MIN_SCORE = 0.75
"""Lowest core coverage accepted as a recognised skeleton."""


class UnknownSkeletonError(ValueError):
    """No layout recognises enough of a skeleton's bone names."""


@dataclass(frozen=True)
class Layout:
    """A skeleton naming: `joints` maps bone names (as the tools spell them) to semantic joints."""

    name: str
    description: str
    joints: dict[str, str]

    def keyed(self) -> dict[str, str]:
        """`name_key(bone name)` -> semantic joint."""
        return {name_key(bone): joint for bone, joint in self.joints.items()}


@dataclass(frozen=True)
class LayoutMatch:
    """A skeleton recognised as `layout`: `joints` maps its own bone names to semantic joints;
    `score` is the fraction of `CORE_JOINTS` found (1.0 = every core joint)."""

    layout: str
    score: float
    joints: dict[str, str]

    def bone_for(self) -> dict[str, str]:
        """Semantic joint -> bone name."""
        return {joint: bone for bone, joint in self.joints.items()}


def name_key(name: str) -> str:
    """A bone name reduced for comparison: 'mixamorig:LeftArm' -> 'leftarm',
    'm_avg_L_Hip' -> 'lhip', 'upperarm01.L' -> 'upperarm01l'."""
    name = re.split(r"[:|]", name)[-1]
    name = re.sub(r"^(mixamorig\d*_|[mf]_avg_)", "", name, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _sided(table: dict[str, str], left: str, right: str) -> dict[str, str]:
    """Expand '{S}'-templated bone names to both sides ('{S}' -> `left` / `right` spelling)."""
    out = {}
    for bone, joint in table.items():
        if "{S}" in bone:
            out[bone.replace("{S}", left)] = f"left_{joint}"
            out[bone.replace("{S}", right)] = f"right_{joint}"
        else:
            out[bone] = joint
    return out


def _fingers(template: str, names: dict[str, str], phalanges: tuple[str, ...]) -> dict[str, str]:
    """Finger bones: template with {F} (finger word) and {K} (phalanx word) -> joint names."""
    return {
        template.replace("{F}", word).replace("{K}", phalanx): f"{finger}{k}"
        for finger, word in names.items()
        for k, phalanx in enumerate(phalanges, start=1)
    }


_MIXAMO_FINGERS = {f: f.capitalize() for f in FINGERS} | {"little": "Pinky"}

_MIXAMO = _sided(
    {
        "Hips": "hips", "Spine": "spine", "Spine1": "chest", "Spine2": "upper_chest",
        "Neck": "neck", "Head": "head", "HeadTop_End": "head_end",
        "{S}Eye": "eye", "{S}UpLeg": "upper_leg", "{S}Leg": "lower_leg", "{S}Foot": "foot",
        "{S}ToeBase": "toes", "{S}Toe_End": "toes_end", "{S}Shoulder": "shoulder",
        "{S}Arm": "upper_arm", "{S}ForeArm": "lower_arm", "{S}Hand": "hand",
        **_fingers("{S}Hand{F}{K}", _MIXAMO_FINGERS, ("1", "2", "3")),
    },
    "Left",
    "Right",
)  # fmt: skip

_CMU = _sided(
    {
        "Hips": "hips", "LowerBack": "spine", "Spine": "chest", "Spine1": "upper_chest",
        "Neck": "neck", "Neck1": "upper_neck", "Head": "head",
        "{S}UpLeg": "upper_leg", "{S}Leg": "lower_leg", "{S}Foot": "foot", "{S}ToeBase": "toes",
        "{S}Shoulder": "shoulder", "{S}Arm": "upper_arm", "{S}ForeArm": "lower_arm",
        "{S}Hand": "hand", "{S}FingerBase": "palm", "{S}HandIndex1": "index1",
        "{S}HandFinger1": "index1",
    },
    "Left",
    "Right",
) | _sided({"{S}HipJoint": "pelvis", "{S}Thumb": "thumb1"}, "L", "R")  # fmt: skip

_CMU_ASF = (
    _sided(
        {
            "Hips": "hips", "lowerback": "spine", "Chest": "chest", "Chest2": "upper_chest",
            "lowerneck": "neck", "Neck": "upper_neck", "Head": "head",
            "{S}Hip": "upper_leg", "{S}Knee": "lower_leg", "{S}Ankle": "foot", "{S}Toe": "toes",
            "{S}Collar": "shoulder", "{S}Shoulder": "upper_arm", "{S}Elbow": "lower_arm",
            "{S}Wrist": "hand",
        },
        "Left",
        "Right",
    )
    | _sided(
        {"{S}HipJoint": "pelvis", "{S}Thumb": "thumb1", "{S}Fingers": "index1"}, "L", "R"
    )
    | _sided(
        {
            "root": "hips", "upperback": "chest", "thorax": "upper_chest",
            "upperneck": "upper_neck", "{S}hipjoint": "pelvis", "{S}femur": "upper_leg",
            "{S}tibia": "lower_leg", "{S}foot": "foot", "{S}toes": "toes",
            "{S}clavicle": "shoulder", "{S}humerus": "upper_arm", "{S}radius": "lower_arm",
            "{S}wrist": "hand", "{S}hand": "palm", "{S}fingers": "index1", "{S}thumb": "thumb1",
        },
        "l",
        "r",
    )
)  # fmt: skip

_ROKOKO = _sided(
    {
        "Hips": "hips", "Spine1": "spine", "Spine2": "chest", "Spine4": "upper_chest",
        "Neck": "neck", "Head": "head", "HeadTop": "head_end",
        "{S}Thigh": "upper_leg", "{S}Shin": "lower_leg", "{S}Foot": "foot", "{S}Toe": "toes",
        "{S}ToeTip": "toes_end", "{S}Shoulder": "shoulder", "{S}Arm": "upper_arm",
        "{S}ForeArm": "lower_arm", "{S}Hand": "hand",
        **_fingers(
            "{S}{F}{K}", {f: f.capitalize() for f in FINGERS}, ("Proximal", "Medial", "Distal")
        ),
    },
    "Left",
    "Right",
)  # fmt: skip

_HUMANOID = _sided(
    {
        "Hips": "hips", "Spine": "spine", "Chest": "chest", "UpperChest": "upper_chest",
        "Neck": "neck", "Head": "head", "Jaw": "jaw", "{S}Eye": "eye",
        "{S}UpperLeg": "upper_leg", "{S}LowerLeg": "lower_leg", "{S}Foot": "foot",
        "{S}Toes": "toes", "{S}Shoulder": "shoulder", "{S}UpperArm": "upper_arm",
        "{S}LowerArm": "lower_arm", "{S}Hand": "hand",
        **_fingers(
            "{S}{F}{K}",
            {f: f.capitalize() for f in FINGERS},
            ("Proximal", "Intermediate", "Distal"),
        ),
    },
    "Left",
    "Right",
)  # fmt: skip

_SMPL_BODY = {
    "pelvis": "hips", "spine1": "spine", "spine2": "chest", "spine3": "upper_chest",
    "neck": "neck", "head": "head", "jaw": "jaw", "{S}_eye_smplhf": "eye",
    "{S}_hip": "upper_leg", "{S}_knee": "lower_leg", "{S}_ankle": "foot", "{S}_foot": "toes",
    "{S}_collar": "shoulder", "{S}_shoulder": "upper_arm", "{S}_elbow": "lower_arm",
    "{S}_wrist": "hand", "{S}_hand": "hand_end",
}  # fmt: skip
_SMPL = (
    _sided(
        {**_SMPL_BODY, **_fingers("{S}_{F}{K}", {f: f for f in FINGERS} | {"little": "pinky"},
                                  ("1", "2", "3"))},
        "left",
        "right",
    )
    | _sided({k.replace("_", "", 1) if k.startswith("{S}") else k: v
              for k, v in _SMPL_BODY.items()}, "L_", "R_")
)  # fmt: skip

_GAME_ENGINE = _sided(
    {
        "pelvis": "hips", "spine_01": "spine", "spine_02": "chest", "spine_03": "upper_chest",
        "neck_01": "neck", "neck_02": "upper_neck", "head": "head",
        "thigh_{S}": "upper_leg", "calf_{S}": "lower_leg", "foot_{S}": "foot",
        "ball_{S}": "toes", "clavicle_{S}": "shoulder", "upperarm_{S}": "upper_arm",
        "lowerarm_{S}": "lower_arm", "hand_{S}": "hand",
        **_fingers("{F}_0{K}_{S}", {f: f for f in FINGERS} | {"little": "pinky"},
                   ("1", "2", "3")),
    },
    "l",
    "r",
)  # fmt: skip

_MAKEHUMAN = _sided(
    {
        "root": "hips", "spine04": "spine", "spine03": "chest", "spine02": "upper_chest",
        "neck01": "neck", "neck02": "upper_neck", "head": "head", "jaw": "jaw",
        "eye.{S}": "eye", "pelvis.{S}": "pelvis", "upperleg01.{S}": "upper_leg",
        "lowerleg01.{S}": "lower_leg", "foot.{S}": "foot", "clavicle.{S}": "shoulder",
        "upperarm01.{S}": "upper_arm", "lowerarm01.{S}": "lower_arm", "wrist.{S}": "hand",
        **_fingers("finger{F}-{K}.{S}", {f: str(i) for i, f in enumerate(FINGERS, start=1)},
                   ("1", "2", "3")),
    },
    "L",
    "R",
)  # fmt: skip

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("mixamo", "Mixamo (with or without the mixamorig: prefix); anny mixamo", _MIXAMO),
        Layout("cmu", "CMU 31-joint BVH (MotionBuilder-friendly names); anny cmu_mb", _CMU),
        Layout("cmu_asf", "CMU BVH converted from ASF/AMC (LeftHip, lowerback, ...)", _CMU_ASF),
        Layout("rokoko", "Rokoko Studio (Newton) names", _ROKOKO),
        Layout("humanoid", "Unity / VRM humanoid names", _HUMANOID),
        Layout("smpl", "SMPL / SMPL-H / SMPL-X joints (22, 24, 52 or 55)", _SMPL),
        Layout("game_engine", "Unreal-style game engine names; anny game_engine", _GAME_ENGINE),
        Layout("makehuman", "MakeHuman default rig; anny makehuman", _MAKEHUMAN),
        Layout("semantic", "Photo Avatar's semantic joints (procedural motions)",
               {j: j for j in SEMANTIC_JOINTS}),
    )
}  # fmt: skip
"""Every known layout by name."""


def match_layout(names: list[str], layout: Layout) -> LayoutMatch:
    """How well `layout` explains the bone `names` (first bone wins a repeated joint)."""
    keyed = layout.keyed()
    joints: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        joint = keyed.get(name_key(name))
        if joint is not None and joint not in taken:
            joints[name] = joint
            taken.add(joint)
    score = sum(j in taken for j in CORE_JOINTS) / len(CORE_JOINTS)
    return LayoutMatch(layout.name, score, joints)


def detect_layout(names: list[str], what: str = "skeleton") -> LayoutMatch:
    """The layout that best explains the bone `names`.

    Ranked by core-joint coverage, then by the share of the names it recognises (a CMU file
    is also half Mixamo by name, but Mixamo leaves LowerBack, LHipJoint, ... unexplained).
    Raises `UnknownSkeletonError` naming `what` when no layout covers `MIN_SCORE` of the core.
    """
    if not names:
        raise UnknownSkeletonError(f"{what} has no bones")
    matches = [match_layout(names, layout) for layout in LAYOUTS.values()]
    best = max(matches, key=lambda m: (m.score, len(m.joints) / len(names)))
    if best.score < MIN_SCORE:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        missing = [j for j in CORE_JOINTS if j not in best.joints.values()]
        raise UnknownSkeletonError(
            f"{what}: bone names not recognised ({shown}); closest layout "
            f"{best.layout!r} lacks {', '.join(missing[:6])}. Known layouts: "
            f"{', '.join(LAYOUTS)}; map the bones by hand instead."
        )
    return best


def bone_map(
    source_names: list[str], target_names: list[str], source_what: str = "source skeleton"
) -> dict[str, str]:
    """Source bone -> target bone for every semantic joint both skeletons have (detected
    layouts on both sides); what the retarget operator shows and lets the user correct."""
    source = detect_layout(source_names, source_what)
    target = detect_layout(target_names, "target armature").bone_for()
    return {bone: target[joint] for bone, joint in source.joints.items() if joint in target}
