"""The demo's web page (Gradio): upload a video or pick the example, click query points on any frame
or ask for a grid, choose the checkpoint, track, watch the tracks and download the npz.

One handler per action; each turns a :class:`~gmrw.demo.backend.DemoError` (or any other failure)
into a message on the page, never a stack trace.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import gradio as gr

from gmrw.demo.backend import DemoBackend, DemoError, VideoInfo

log = logging.getLogger("gmrw.demo")

INTRO = """# gmrw: track any point
Upload a short video (or pick the example below), click points on any frame — move the slider to
pick the frame — or ask for a grid, then press **Track**. Tracks are drawn as coloured markers with
trails; a hollow ring means the model thinks the point is hidden. The `.npz` holds `tracks` (N, T, 2)
as (x, y) pixels, `occluded` (N, T) and `queries` (N, 3) as (t, y, x), as `gmrw-track` writes them."""


def _shown_errors(handler):
    """Run ``handler``; a DemoError/ValueError becomes its message on the page, anything else a
    short note (the traceback goes to the server's log only)."""

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as error:  # DemoError, and the Predictor's messages about its input
            raise gr.Error(str(error), print_exception=False) from None
        except Exception as error:
            log.exception("demo request failed")
            raise gr.Error(
                f"something went wrong ({type(error).__name__}); the server's log has the details",
                print_exception=False,
            ) from None

    return wrapped


def build_app(backend: DemoBackend, example: Path | None = None) -> gr.Blocks:
    """The page, wired to ``backend``."""
    choices = list(backend.checkpoints)

    @_shown_errors
    def on_upload(path):
        if not path:
            return None, "", gr.Slider(value=0, maximum=1), None, backend.describe_points([]), [], None, None
        info = backend.open_video(path)
        return (
            info,
            backend.describe(info),
            gr.Slider(value=0, minimum=0, maximum=info.num_frames - 1, step=1, interactive=True),
            backend.frame_image(info, 0, []),
            backend.describe_points([]),
            [],
            None,
            None,
        )

    @_shown_errors
    def on_frame(info: VideoInfo | None, t, points):
        if info is None:
            return None
        return backend.frame_image(info, int(t), points)

    @_shown_errors
    def on_click(info: VideoInfo | None, t, points, evt: gr.SelectData):
        if info is None:
            raise DemoError("upload a video first")
        if evt.index is None:
            return points, backend.frame_image(info, int(t), points), backend.describe_points(points)
        points = backend.add_point(info, int(t), tuple(evt.index), points)
        return points, backend.frame_image(info, int(t), points), backend.describe_points(points)

    @_shown_errors
    def on_clear(info: VideoInfo | None, t):
        image = backend.frame_image(info, int(t), []) if info is not None else None
        return [], image, backend.describe_points([])

    @_shown_errors
    # Gradio hands a progress bar to a handler whose last default is gr.Progress(); with track_tqdm
    # the Predictor's bar over frame pairs and the drawing's over frames show on the page.
    def on_run(
        info: VideoInfo | None,
        points,
        grid_size,
        t,
        checkpoint,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008
    ):
        if info is None:
            raise DemoError("upload a video first (or pick the example)")
        result = backend.run(
            info, points, int(grid_size or 0), int(t), checkpoint, lambda f, text: progress(f, desc=text)
        )
        return str(result.video), str(result.npz), result.message

    with gr.Blocks(title="gmrw: track any point") as app:
        gr.Markdown(INTRO)
        info_state = gr.State(None)
        points_state = gr.State([])
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Video", file_types=["video"], type="filepath", elem_id="upload")
                if example is not None:
                    gr.Examples([[str(example)]], inputs=[upload], label="Example (synthetic)")
                about = gr.Markdown(elem_id="video-info")
                frame = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="frame-slider")
                image = gr.Image(
                    label="Click to add query points on this frame",
                    type="numpy",
                    interactive=False,
                    buttons=["fullscreen"],
                    elem_id="frame-image",
                )
                listed = gr.Markdown(backend.describe_points([]), elem_id="points")
                with gr.Row():
                    clear = gr.Button("Clear points", elem_id="clear")
                    grid = gr.Number(0, label="Grid N×N on this frame (0: none)", precision=0, minimum=0)
                checkpoint = gr.Dropdown(choices, value=choices[0], label="Checkpoint", elem_id="checkpoint")
                run = gr.Button("Track", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                tracks_video = gr.Video(
                    label="Tracks", interactive=False, buttons=["download"], elem_id="tracks-video"
                )
                tracks_file = gr.File(label="Tracks (.npz)", interactive=False, elem_id="tracks-npz")

        upload.change(
            on_upload,
            [upload],
            [info_state, about, frame, image, listed, points_state, tracks_video, tracks_file],
        )
        frame.change(on_frame, [info_state, frame, points_state], [image])
        image.select(on_click, [info_state, frame, points_state], [points_state, image, listed])
        clear.click(on_clear, [info_state, frame], [points_state, image, listed])
        run.click(
            on_run,
            [info_state, points_state, grid, frame, checkpoint],
            [tracks_video, tracks_file, status],
        )
    return app
