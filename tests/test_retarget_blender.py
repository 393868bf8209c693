"""Retargeting in real Blender (the bpy wheel, headless): BVH and FBX files and scene armatures
baked onto a built avatar's armature, the built-in motions, clean failures, and export of the
animated avatar."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from test_retarget import CMU, FRAMES, MIXAMO, _motion  # noqa: E402

import photo_avatar  # noqa: E402
from photo_avatar.core.avatar import Avatar  # noqa: E402
from photo_avatar.core.camera import Camera  # noqa: E402
from photo_avatar.core.retarget.bvh import parse_bvh  # noqa: E402
from photo_avatar.core.retarget.kinematics import pose_frames  # noqa: E402
from photo_avatar.core.retarget.solve import retarget  # noqa: E402
from photo_avatar.operators import build  # noqa: E402
from photo_avatar.operators import retarget as retarget_ops  # noqa: E402

RIG = "Avatar_test_rig"


@pytest.fixture(scope="module")
def avatar(body) -> Avatar:
    """The rest body as an avatar: full mesh, weights cut to 4 bones, plain texture."""
    rest = body.rest(body.default_phenotype)
    weights = body.skin_weights.numpy().copy()
    np.put_along_axis(weights, np.argsort(-weights, axis=1)[:, 4:], 0.0, axis=1)
    weights /= weights.sum(1, keepdims=True)
    verts = rest.vertices[0].numpy()
    return Avatar(
        vertices=verts,
        faces=body.faces.astype(np.int32),
        weights=weights.astype(np.float32),
        uv=np.zeros((len(verts), 2), np.float32),
        texture=np.full((8, 8, 3), 128, np.uint8),
        bone_names=list(body.bone_names),
        parents=list(body.parents),
        bone_matrices=rest.bone_matrices[0].numpy(),
        bone_tails=rest.tails[0].numpy(),
        photo_poses=body.identity_pose(1).numpy(),
        cameras=[Camera.looking_at_person(512, 640, 0.0, 4.0)],
        photo_names=["front.png"],
    )


@pytest.fixture
def rig(scene, avatar) -> bpy.types.Object:
    build.build_avatar(bpy.context, avatar, "Avatar_test")
    return bpy.data.objects[RIG]


@pytest.fixture(scope="module")
def cmu_bvh(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("bvh") / "cmu_walk.bvh"
    path.write_text(_motion(CMU)[0])
    return str(path)


def _state() -> dict[str, object]:
    """Every datablock count, the frame range and fps, and the rig's action."""
    kinds = ("objects", "meshes", "armatures", "materials", "images", "actions", "collections")
    scene = bpy.context.scene
    rig = bpy.data.objects.get(RIG)
    data = rig.animation_data if rig else None
    return {
        **{kind: len(getattr(bpy.data, kind)) for kind in kinds},
        "frames": (scene.frame_start, scene.frame_end, scene.frame_current),
        "fps": (scene.render.fps, scene.render.fps_base),
        "action": data.action.name if data and data.action else None,
    }


def _heads(obj: bpy.types.Object, frames: list[int]) -> np.ndarray:
    """(F, J, 3) world bone heads of `obj` at `frames`, bones in its own order."""
    out = []
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        out.append([obj.matrix_world @ p.head for p in obj.pose.bones])
    return np.array(out)


def _limb_directions(obj: bpy.types.Object, frames: list[int]) -> np.ndarray:
    """(F, L, 3) unit directions of the avatar's limb bones (head to child head)."""
    names = [b.name for b in obj.pose.bones]
    heads = _heads(obj, frames)
    limbs = [
        (f"mixamorig:{s}{a}", f"mixamorig:{s}{b}")
        for s in ("Left", "Right")
        for a, b in (("UpLeg", "Leg"), ("Leg", "Foot"), ("Arm", "ForeArm"), ("ForeArm", "Hand"))
    ]
    d = np.stack([heads[:, names.index(b)] - heads[:, names.index(a)] for a, b in limbs], 1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.sum(a * b, -1), -1.0, 1.0)))


def test_add_on_registers_and_removes_the_motion_tools():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for _ in range(2):
        photo_avatar.register()
        assert hasattr(bpy.types.Scene, "photo_avatar_retarget")
        for op in ("retarget", "motion", "retarget_detect", "export_animation"):
            assert hasattr(bpy.types, f"PHOTO_AVATAR_OT_{op}")
        assert hasattr(bpy.types, "PHOTO_AVATAR_PT_retarget")
        photo_avatar.unregister()
        assert not hasattr(bpy.types.Scene, "photo_avatar_retarget")
        assert not hasattr(bpy.types, "PHOTO_AVATAR_OT_retarget")
        assert not hasattr(bpy.types, "PHOTO_AVATAR_PT_retarget")


def test_bvh_file_becomes_one_baked_action_as_the_core_computes(rig, cmu_bvh):
    objects = len(bpy.data.objects)
    assert bpy.ops.photo_avatar.retarget(filepath=cmu_bvh, target=RIG) == {"FINISHED"}
    assert len(bpy.data.objects) == objects  # the source is not left behind
    action = rig.animation_data.action
    assert action.name == f"{RIG}_cmu_walk"
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end) == (1, FRAMES)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(30.0)
    assert tuple(action.frame_range) == (1.0, float(FRAMES))

    target = retarget_ops.target_rig(rig)
    result = retarget(parse_bvh(_motion(CMU)[0], "cmu_walk.bvh"), target)
    expected = pose_frames(target, result.rotations, result.root_bone, result.root_translations)
    order = [target.bone_names.index(b.name) for b in rig.pose.bones]
    for frame in (1, 30, 61):
        blender = _heads(rig, [frame])[0]
        assert np.abs(blender - expected[frame - 1, order, :3, 3]).max() < 1e-3


def test_keep_source_leaves_the_imported_armature(rig, cmu_bvh):
    armatures = {o.name for o in bpy.data.objects if o.type == "ARMATURE"}
    bpy.ops.photo_avatar.retarget(filepath=cmu_bvh, target=RIG, keep_source=True)
    added = [o for o in bpy.data.objects if o.type == "ARMATURE" and o.name not in armatures]
    assert len(added) == 1 and added[0].animation_data.action is not None


def test_scene_armature_and_fbx_file_give_the_bvh_motion(rig, cmu_bvh, tmp_path):
    frames = [1, 20, 45, 70]
    bpy.ops.photo_avatar.retarget(filepath=cmu_bvh, target=RIG)
    from_bvh = _limb_directions(rig, frames)

    bpy.ops.import_anim.bvh(filepath=cmu_bvh, global_scale=0.0564, update_scene_fps=False)
    source = bpy.context.active_object
    assert bpy.ops.photo_avatar.retarget(source=source.name, target=RIG) == {"FINISHED"}
    assert _angles(_limb_directions(rig, frames), from_bvh).mean() < 3.0

    fbx = tmp_path / "cmu_walk.fbx"
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj == source)
    bpy.ops.export_scene.fbx(filepath=str(fbx), use_selection=True, add_leaf_bones=False)
    bpy.data.objects.remove(source)
    objects = len(bpy.data.objects)
    assert bpy.ops.photo_avatar.retarget(filepath=str(fbx), target=RIG) == {"FINISHED"}
    assert len(bpy.data.objects) == objects
    assert _angles(_limb_directions(rig, frames), from_bvh).mean() < 5.0


def test_a_file_that_is_not_bvh_leaves_the_scene_as_it_was(rig, tmp_path):
    bpy.ops.photo_avatar.motion(motion="walk", target=RIG)
    before = _state()
    fake = tmp_path / "dance.bvh"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n not motion")
    with pytest.raises(RuntimeError, match=r"dance\.bvh.*not a BVH file"):
        bpy.ops.photo_avatar.retarget(filepath=str(fake), target=RIG)
    fake_fbx = tmp_path / "dance.fbx"
    fake_fbx.write_text("HIERARCHY\n")
    with pytest.raises(RuntimeError):
        bpy.ops.photo_avatar.retarget(filepath=str(fake_fbx), target=RIG)
    with pytest.raises(RuntimeError, match="not a BVH or FBX"):
        bpy.ops.photo_avatar.retarget(filepath=str(tmp_path / "dance.mp4"), target=RIG)
    assert _state() == before


def test_unrecognised_skeleton_leaves_the_scene_as_it_was(rig, tmp_path):
    text = _motion(MIXAMO)[0]
    for k, (name, _, _) in enumerate(MIXAMO):
        text = text.replace(f" {name}\n", f" bone_{k:03d}\n")
    robot = tmp_path / "robot.bvh"
    robot.write_text(text)
    bpy.ops.import_anim.bvh(filepath=str(robot), global_scale=0.01)
    source = bpy.context.active_object
    fbx = tmp_path / "robot.fbx"
    bpy.ops.export_scene.fbx(filepath=str(fbx), use_selection=True, add_leaf_bones=False)
    bpy.data.objects.remove(source)
    before = _state()
    for path in (robot, fbx):
        with pytest.raises(RuntimeError, match=r"robot\.(bvh|fbx).*not recognised"):
            bpy.ops.photo_avatar.retarget(filepath=str(path), target=RIG)
        assert _state() == before, path.name


def test_built_in_motions_make_the_avatar_walk_and_dance(rig):
    names = [b.name for b in rig.pose.bones]
    feet = [names.index(f"mixamorig:{s}ToeBase") for s in ("Left", "Right")]
    ground = min(rig.data.bones[names[f]].head_local.z for f in feet)
    for motion, frames in (("walk", 128), ("dance", 240)):
        assert bpy.ops.photo_avatar.motion(motion=motion, target=RIG) == {"FINISHED"}
        assert rig.animation_data.action.frame_range[1] == frames
        heads = _heads(rig, list(range(1, frames + 1, 8)))
        hips = heads[:, names.index("mixamorig:Hips")]
        assert np.abs(heads[:, feet, 2].min(1) - ground).max() < 0.03
        travel = np.linalg.norm(hips[-1, :2] - hips[0, :2])
        assert travel > 3.0 if motion == "walk" else travel < 0.1
    assert len([a for a in bpy.data.actions if a.name.startswith(RIG)]) == 2


def test_detected_bone_map_can_be_corrected(rig, cmu_bvh):
    settings = bpy.context.scene.photo_avatar_retarget
    settings.filepath, settings.target = cmu_bvh, rig
    assert bpy.ops.photo_avatar.retarget_detect() == {"FINISHED"}
    pairs = {p.source: p.target for p in settings.bone_map}
    assert len(pairs) == 31
    assert pairs["LeftUpLeg"] == "mixamorig:LeftUpLeg" and pairs["LowerBack"] == "mixamorig:Spine"
    assert pairs["Neck1"] == ""  # the avatar has no second neck bone
    # the user drops the left forearm from the map: that bone keeps its rest pose
    for pair in settings.bone_map:
        if pair.source == "LeftForeArm":
            pair.target = ""
    bone_map = [
        {"name": p.source, "source": p.source, "target": p.target} for p in settings.bone_map
    ]
    bpy.ops.photo_avatar.retarget(filepath=cmu_bvh, target=RIG, bone_map=bone_map)
    bpy.context.scene.frame_set(30)
    forearm = rig.pose.bones["mixamorig:LeftForeArm"].rotation_quaternion
    upper = rig.pose.bones["mixamorig:LeftArm"].rotation_quaternion
    assert forearm.angle < 1e-4 and upper.angle > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".fbx", ".glb"])
def test_exported_avatar_keeps_its_motion(rig, tmp_path, suffix):
    bpy.ops.photo_avatar.motion(motion="walk", target=RIG)
    frames = [1, 17, 40]
    names = [b.name for b in rig.pose.bones]
    expected = _heads(rig, frames)
    path = tmp_path / f"walker{suffix}"
    assert bpy.ops.photo_avatar.export_animation(filepath=str(path), target=RIG) == {"FINISHED"}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if suffix == ".fbx":
        # Blender writes frame f at f / fps; the importer adds one frame unless told not to
        bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0)
    else:
        # glTF keeps seconds and no frame rate: the importer converts at the scene's
        bpy.context.scene.render.fps = 30
        bpy.ops.import_scene.gltf(filepath=str(path))
    armature = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    assert any(o.type == "MESH" for o in bpy.data.objects)
    action = armature.animation_data.action
    assert action is not None and action.frame_range[1] - action.frame_range[0] >= 120
    reimported = {b.name: k for k, b in enumerate(armature.pose.bones)}
    heads = _heads(armature, frames)
    order = [reimported[n] for n in names if n in reimported]
    assert len(order) == len(names)
    assert np.abs(heads[:, order] - expected).max() < 0.01
