"""Motion capture onto the avatar's armature: BVH reading, bone maps, the retargeting solve and
the project's own procedural motions. Pure numpy; Blender's side lives in operators/."""
