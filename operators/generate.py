"""Generate: photos -> avatar in the scene. The pipeline runs in a background thread; bpy is
only touched here on the main thread, from the modal operator's timer events.

`execute` (scripts, `blender -b`) runs to completion before it returns; `invoke` (the sidebar
button) returns at once and keeps Blender responsive, with progress and Cancel in the sidebar.
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy
from bpy.props import CollectionProperty

from ..core.avatar import Settings
from ..core.progress import Cancelled, Progress
from .build import Builder, MeshArrays, prepare
from .preferences import preferences
from .properties import (
    network_property,
    preset_property,
    rest_pose_property,
    rig_property,
    triangles_property,
)

log = logging.getLogger(__name__)

TIMER_SECONDS = 0.05
BUILD_BUDGET = 0.04
"""Main-thread seconds of building per timer event: with the redraw this keeps every stall
well under 0.1 s."""


@dataclass
class Job:
    """One background run: its thread, its progress (which also cancels it) and its outcome.
    The worker writes only the plain fields below; the main thread reads them."""

    progress: Progress
    stage: str = "starting"
    fraction: float = 0.0
    result: object | None = None
    arrays: MeshArrays | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None
    longest_stall: float = 0.0
    """Longest main-thread time spent in one timer event (seconds)."""
    started: float = field(default_factory=time.perf_counter)

    def report(self, stage: str, fraction: float) -> None:
        self.stage, self.fraction = stage, fraction


running: Job | None = None
"""The Generate in flight (one at a time), for the Cancel operator and the sidebar."""


def _settings_from(op: bpy.types.Operator, context: bpy.types.Context) -> Settings:
    """The run's settings: the operator's options over the add-on preferences (a script
    that leaves `preset` unset gets the preferred default preset)."""
    prefs = preferences(context)
    overrides: dict[str, object] = {
        "rig": op.rig,
        "rest_pose": op.rest_pose,
        "use_network": op.use_network,
    }
    if op.triangles:
        overrides["triangles"] = op.triangles
    preset = op.preset
    if prefs is not None:
        overrides["device"] = prefs.device
        if prefs.smplx_folder:
            overrides["smplx_folder"] = bpy.path.abspath(prefs.smplx_folder)
        if not op.properties.is_property_set("preset"):
            preset = prefs.default_preset
    if op.rig == "smplx" and not overrides.get("smplx_folder"):
        raise ValueError(
            "The SMPL-X rig needs your SMPL-X model folder: set it in the add-on preferences"
        )
    return Settings.from_preset(preset, **overrides)


def _photo_paths(op: bpy.types.Operator, context: bpy.types.Context) -> list[Path]:
    if len(op.photos):
        paths = [item.name for item in op.photos]
    else:
        paths = [item.filepath for item in context.scene.photo_avatar.photos]
    return [Path(bpy.path.abspath(path)) for path in paths if path]


def _run(job: Job, paths: list[Path], settings: Settings, threads: int) -> None:
    """The worker: plain Python, no bpy."""
    import torch

    from ..core.pipeline import generate

    if threads:
        torch.set_num_threads(threads)
    try:
        job.result = generate(paths, settings, job.progress)
        job.progress.step("building the avatar", 1.0)
        job.arrays = prepare(job.result.avatar)
    except BaseException as error:  # handed to the main thread, which reports it
        job.error = error


def start_job(paths: list[Path], settings: Settings, threads: int) -> Job:
    """Run the pipeline on `paths` in a worker thread; the job reports its progress and
    cancels through `job.progress`."""
    job = Job(Progress())
    job.progress.callback = job.report
    job.thread = threading.Thread(
        target=_run,
        args=(job, paths, settings, threads),
        name="photo_avatar.generate",
        daemon=True,
    )
    job.thread.start()
    return job


class PHOTO_AVATAR_OT_generate(bpy.types.Operator):
    """Make a rigged, textured avatar from the photos of the person"""

    bl_idname = "photo_avatar.generate"
    bl_label = "Generate Avatar"
    bl_options = {"REGISTER", "UNDO"}

    photos: CollectionProperty(
        type=bpy.types.OperatorFileListElement,
        name="Photos",
        description="Paths of the photos of the person ({'name': path} each); "
        "empty takes the sidebar's list",
    )
    preset: preset_property()
    rig: rig_property()
    rest_pose: rest_pose_property()
    triangles: triangles_property()
    use_network: network_property()

    _job = None
    _timer = None
    _builder = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return running is None

    def _start(self, context: bpy.types.Context) -> Job | None:
        paths = _photo_paths(self, context)
        if not paths:
            self.report({"ERROR"}, "Add at least one photo of the person")
            return None
        if len(paths) > 8:
            self.report({"ERROR"}, f"Use 1 to 8 photos, not {len(paths)}")
            return None
        prefs = preferences(context)
        try:
            settings = _settings_from(self, context)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return None
        return start_job(paths, settings, prefs.threads if prefs else 0)

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Blocking: for scripts and background mode."""
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        job.thread.join()
        builder = self._builder_for(context, job)
        if builder is None:
            return {"CANCELLED"}
        try:
            builder.advance(float("inf"))
        except Exception as error:
            return self._build_failed(error)
        return self._done(job, builder)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        global running
        if bpy.app.background:
            return self.execute(context)
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        running = self._job = job
        state = context.window_manager.photo_avatar_run
        state.running, state.progress, state.stage = True, 0.0, "starting"
        self._timer = context.window_manager.event_timer_add(TIMER_SECONDS, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC":
            self._job.progress.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        start = time.perf_counter()
        job = self._job
        state = context.window_manager.photo_avatar_run
        state.progress, state.stage = job.fraction, job.stage
        try:
            status = self._tick(context, job)
        finally:
            job.longest_stall = max(job.longest_stall, time.perf_counter() - start)
        if status != {"RUNNING_MODAL"}:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
            _clear_run(context)
        else:
            _redraw(context)
        return status

    def _tick(self, context: bpy.types.Context, job: Job) -> set[str]:
        """One timer event: wait for the worker, then build a slice of the avatar."""
        if job.thread.is_alive():
            return {"RUNNING_MODAL"}
        if self._builder is None:
            self._builder = self._builder_for(context, job)
            if self._builder is None:
                return {"CANCELLED"}
            return {"RUNNING_MODAL"}
        if job.progress.cancel_event.is_set():
            self._builder.abort()
            self.report({"WARNING"}, "Photo Avatar: cancelled; nothing was added")
            return {"CANCELLED"}
        try:
            if not self._builder.advance(BUILD_BUDGET):
                return {"RUNNING_MODAL"}
        except Exception as error:
            return self._build_failed(error)
        return self._done(job, self._builder)

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender is closing the operator (file load, quit): stop the worker, drop any
        half-built avatar."""
        if self._job is not None:
            self._job.progress.cancel()
        if self._builder is not None:
            self._builder.abort()
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
        _clear_run(context)

    def _builder_for(self, context: bpy.types.Context, job: Job) -> Builder | None:
        """Report a failed or cancelled run (None), or start building its avatar."""
        if isinstance(job.error, Cancelled):
            self.report({"WARNING"}, "Photo Avatar: cancelled; nothing was added")
            return None
        if job.error is not None:
            log.error("generate failed", exc_info=job.error)
            self.report({"ERROR"}, f"Photo Avatar: {job.error}")
            return None
        avatar = job.result.avatar
        stem = Path(avatar.photo_names[0]).stem if avatar.photo_names else "avatar"
        return Builder(context, avatar, f"Avatar_{stem}", job.arrays)

    def _build_failed(self, error: Exception) -> set[str]:
        log.error("building the avatar failed", exc_info=error)
        self.report({"ERROR"}, f"Photo Avatar: could not build the avatar: {error}")
        return {"CANCELLED"}

    def _done(self, job: Job, builder: Builder) -> set[str]:
        total = time.perf_counter() - job.started
        log.info("longest main-thread stall %.3f s", job.longest_stall)
        self.report({"INFO"}, f"Photo Avatar: {builder.collection.name} ready in {total:.0f} s")
        return {"FINISHED"}


class PHOTO_AVATAR_OT_cancel(bpy.types.Operator):
    """Stop the running Generate; nothing is added to the scene"""

    bl_idname = "photo_avatar.cancel"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return running is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        running.progress.cancel()
        context.window_manager.photo_avatar_run.stage = "cancelling"
        return {"FINISHED"}


def _clear_run(context: bpy.types.Context) -> None:
    global running
    running = None
    state = context.window_manager.photo_avatar_run
    state.running, state.progress, state.stage = False, 0.0, ""
    _redraw(context)


def _redraw(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


CLASSES = (PHOTO_AVATAR_OT_generate, PHOTO_AVATAR_OT_cancel)
