"""Writing a video frame by frame, so that memory holds one frame however long the video is.

:class:`VideoWriter` streams a GIF (Pillow's GIF encoder, one frame at a time, each with its own
palette, at most :data:`GIF_SIDE` pixels a side) or an MP4 (imageio-ffmpeg) into a hidden temporary
file next to the target, renamed onto it when the video is complete: a recording that fails or is
stopped leaves no partial file. :func:`check_video_space` refuses, before the episodes are played, a
video whose estimated size exceeds the free space of its directory.
"""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError

#: GIFs grow fast: frames are scaled to at most this many pixels a side.
GIF_SIDE = 360


class VideoWriter:
    """Frames appended one at a time to ``out`` (``.gif`` or ``.mp4``) at ``fps`` frames per second."""

    def __init__(self, out: str | Path, fps: float) -> None:
        self.out, self.fps, self.frames = Path(out), fps, 0
        self.gif = self.out.suffix.lower() == ".gif"
        self.partial = self.out.with_name(f".{self.out.stem}.{os.getpid()}.partial{self.out.suffix}")
        self.first_frame_bytes = 0  # the encoded size of the first frame (GIF), or its zlib size (MP4)
        self._fh: Any = None
        self._writer: Any = None
        try:
            # Made here for both formats: ffmpeg opens its output only once frames arrive, so a directory
            # that cannot be written would otherwise show only while the episodes are played.
            self._fh = open(self.partial, "wb")
            if not self.gif:
                self._fh.close()
                self._fh = None
                import imageio.v2 as imageio
                # ffmpeg's own lines are kept quiet: a failure is reported in one line by add() or close()
                self._writer = imageio.get_writer(self.partial, fps=fps, macro_block_size=1, format="FFMPEG",
                                                  ffmpeg_log_level="quiet")
        except OSError as exc:
            self.abort()
            raise HarnessError(f"--video {str(self.out)!r}: cannot write there ({exc.strerror or exc})") from None

    def add(self, frame: np.ndarray) -> None:
        """Append one RGB frame (``H x W x 3`` uint8)."""
        try:
            if self.gif:
                self._add_gif(frame)
            else:
                if self.frames == 0:
                    self.first_frame_bytes = len(zlib.compress(np.ascontiguousarray(frame).tobytes(), 1))
                self._writer.append_data(frame)
        except OSError as exc:
            self.abort()
            raise HarnessError(f"--video {str(self.out)!r}: writing frame {self.frames + 1} failed "
                               f"({exc.strerror or exc}); no video was written") from None
        self.frames += 1

    def _add_gif(self, frame: np.ndarray) -> None:
        from PIL import GifImagePlugin, Image
        im = Image.fromarray(frame)
        scale = GIF_SIDE / max(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)))
        im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
        if self.frames == 0:
            self.size = im.size
            header, _ = GifImagePlugin.getheader(im, info={"loop": 0})
            self._fh.write(b"".join(header))
        elif im.size != self.size:
            raise HarnessError(f"--video {str(self.out)!r}: frame {self.frames + 1} is {im.size}, the first was "
                               f"{self.size}; a task must draw frames of one size")
        data = b"".join(GifImagePlugin.getdata(im, (0, 0), duration=int(round(1000 / self.fps)),
                                               include_color_table=True))
        if self.frames == 0:
            self.first_frame_bytes = len(data)
        self._fh.write(data)

    def close(self) -> Path:
        """Finish the file and put it in place; return its path."""
        try:
            if self.gif:
                self._fh.write(b";")  # the GIF trailer
                self._fh.close()
            else:
                self._writer.close()
            os.replace(self.partial, self.out)
        except OSError as exc:
            self.abort()
            raise HarnessError(f"--video {str(self.out)!r}: finishing the file failed ({exc.strerror or exc}); "
                               "no video was written") from None
        self._fh = self._writer = None
        return self.out

    def abort(self) -> None:
        """Drop the partial file (nothing is left where the video was to be)."""
        for closer in (self._fh, self._writer):
            try:
                if closer is not None:
                    closer.close()
            except Exception:
                pass
        self._fh = self._writer = None
        try:
            self.partial.unlink(missing_ok=True)
        except OSError:  # it could not be made (a read-only directory) or is already gone
            pass


def check_video_space(out: Path, frames: int, frame_bytes: int, how: str) -> None:
    """Refuse a video of up to ``frames`` frames of about ``frame_bytes`` each that the free space of
    ``out``'s directory cannot hold; ``how`` says where the frame count comes from."""
    need = frames * frame_bytes
    try:
        free = shutil.disk_usage(out.parent).free
    except OSError:
        return
    if need > free:
        raise HarnessError(f"--video {str(out)!r}: up to {frames:,} frames ({how}) of about {_size(frame_bytes)} "
                           f"each need about {_size(need)}, and {str(out.parent)!r} has {_size(free)} free: lower "
                           "--video-episodes or raise --frame-step")


def _size(n: float) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} bytes"
