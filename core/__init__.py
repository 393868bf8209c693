"""The pipeline, photos -> Avatar, in plain Python (numpy, torch, opencv, trimesh); never bpy."""
