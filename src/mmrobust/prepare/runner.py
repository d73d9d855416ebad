"""Resumable preparation of a list of clips: skip what is complete, build the rest atomically, summarize.

A clip is complete when its frame folder and its audio file both exist. Each clip is built in its own
temporary folder under ``OUT/.prepare_tmp`` (same filesystem as the outputs): the audio file is moved into
place first (``os.replace``), the frame folder last (``os.rename``), so the frame folder appears all at once
and an interrupted clip has no frame folder and is redone on the next run. Leftover temporary folders are
removed when a run starts. A clip that cannot be decoded is recorded with its reason and does not stop the
others; it is retried on the next run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from mmrobust.atomic_io import write_text_atomic
from mmrobust.engine.progress import progress_bar
from mmrobust.prepare.video import UnreadableVideo, check_wav, extract_audio, extract_frames

TMP_DIR = ".prepare_tmp"
UNREADABLE_FILE = "prepare_unreadable.txt"


@dataclass(frozen=True)
class Clip:
    """One clip to prepare: its video, where its frames and audio go, and where the audio comes from
    (``audio_src`` linked or copied as is, or, when ``None``, decoded from the video at ``audio_rate`` Hz)."""

    name: str
    video: Path
    frames_dir: Path
    audio_out: Path
    audio_src: Path | None = None
    audio_rate: int = 16000
    fps: int = 1

    def is_done(self) -> bool:
        if not (self.frames_dir.is_dir() and self.audio_out.is_file()):
            return False
        return any(p.suffix == ".jpg" for p in self.frames_dir.iterdir())


@dataclass
class Summary:
    """What a run did: clips prepared now, skipped (already complete), unreadable (name → reason)."""

    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    unreadable_file: Path | None = None

    @property
    def done(self) -> set[str]:
        return set(self.prepared) | set(self.skipped)

    def lines(self, shown: int = 20) -> list[str]:
        head = (
            f"prepared {len(self.prepared)}, skipped {len(self.skipped)} (already done), "
            f"unreadable {len(self.unreadable)}"
        )
        if self.unreadable_file is not None:
            head += f" (listed in {self.unreadable_file})"
        out = [head]
        items = sorted(self.unreadable.items())
        out += [f"  {name}: {why}" for name, why in items[:shown]]
        if len(items) > shown:
            out.append(f"  ... and {len(items) - shown} more")
        return out


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` when both are on one filesystem, else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def build_clip(clip: Clip, tmp_root: Path) -> str | None:
    """Build one clip (module docstring); ``None`` when done, else the reason it is unreadable."""
    tmp = Path(tempfile.mkdtemp(dir=tmp_root, prefix="clip-"))
    try:
        frames = tmp / "frames"
        frames.mkdir()
        audio = tmp / "audio.wav"
        if not clip.video.is_file():
            return f"missing {clip.video}"
        try:
            if clip.audio_src is not None:
                if not clip.audio_src.is_file():
                    return f"missing {clip.audio_src}"
                try:
                    check_wav(clip.audio_src)
                except UnreadableVideo as error:
                    return f"{clip.audio_src}: {error}"
                link_or_copy(clip.audio_src, audio)
            else:
                extract_audio(clip.video, audio, clip.audio_rate)
            extract_frames(clip.video, frames, clip.fps)
        except UnreadableVideo as error:
            return f"{clip.video}: {error}"
        clip.audio_out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(audio, clip.audio_out)
        if clip.frames_dir.exists():
            shutil.rmtree(clip.frames_dir)
        clip.frames_dir.parent.mkdir(parents=True, exist_ok=True)
        os.rename(frames, clip.frames_dir)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _results(todo: Sequence[Clip], tmp_root: Path, workers: int) -> Iterator[tuple[Clip, str | None]]:
    if workers <= 1 or len(todo) <= 1:
        for clip in todo:
            yield clip, build_clip(clip, tmp_root)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(build_clip, clip, tmp_root): clip for clip in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()


def run_clips(
    clips: Sequence[Clip],
    out: Path,
    *,
    description: str,
    workers: int = 1,
    progress: bool = True,
    unreadable: dict[str, str] | None = None,
) -> Summary:
    """Prepare ``clips`` into ``out`` (module docstring). ``unreadable`` holds clips already known to be
    unusable (e.g. a badly named file); they are reported with the others in ``OUT/prepare_unreadable.txt``,
    which is removed when a run finds none."""
    summary = Summary(unreadable=dict(unreadable or {}))
    tmp_root = out / TMP_DIR
    shutil.rmtree(tmp_root, ignore_errors=True)
    tmp_root.mkdir(parents=True)
    todo = []
    for clip in clips:
        if clip.is_done():
            summary.skipped.append(clip.name)
        else:
            todo.append(clip)
    with progress_bar(progress) as bar:
        task = bar.add_task(description, total=len(clips), completed=len(summary.skipped))
        for clip, reason in _results(todo, tmp_root, workers):
            if reason is None:
                summary.prepared.append(clip.name)
            else:
                summary.unreadable[clip.name] = reason
            bar.advance(task)
    shutil.rmtree(tmp_root, ignore_errors=True)
    path = out / UNREADABLE_FILE
    if summary.unreadable:
        text = "".join(f"{name}\t{why}\n" for name, why in sorted(summary.unreadable.items()))
        summary.unreadable_file = write_text_atomic(text, path)
    else:
        path.unlink(missing_ok=True)
    return summary
