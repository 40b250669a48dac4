"""A folder holding one DICOM series of single-frame slices, assembled into a volume ``(C, D, H, W)``.

Slices are ordered by their position along the slice normal (``ImagePositionPatient`` projected on the cross
product of the ``ImageOrientationPatient`` row and column directions), not by file name or instance number, and
the slice spacing is measured from those positions (``SliceThickness`` is the thickness, not the spacing). Axis 0
therefore runs along the normal: for an axial series, inferior → superior; axis 1 follows the columns (top → bottom
of each slice), axis 2 the rows (left → right as displayed).

A folder that cannot make one regular volume is refused with the reason: several series, mixed orientations,
slices of different sizes, two slices at one position, a gap (missing slices) or uneven spacing.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from data_adapters.errors import InvalidInputError
from data_adapters.readers.base import ImageReader, check_size
from data_adapters.readers.dicom import (
    DicomReader,
    in_plane_spacing,
    open_dicom,
    pixels_of,
    voi_window,
)
from data_adapters.records import Image

try:
    import pydicom
    from pydicom.errors import InvalidDicomError
except ImportError:
    pydicom = None

__all__ = ["IGNORED_NAMES", "series_ref", "parse_series_ref", "DicomSeriesReader"]

#: relative tolerance on slice spacing before a folder counts as gapped or uneven
SPACING_TOLERANCE = 0.1
#: files a DICOM folder may hold beside the slices
IGNORED_NAMES = frozenset({"dicomdir", "thumbs.db", "desktop.ini"})


#: a series inside a folder that holds several is addressed as ``FOLDER/@<SeriesInstanceUID>``
SERIES_MARK = "@"


def series_ref(folder: Path, uid: str) -> Path:
    """The reference to series ``uid`` among the files of ``folder`` (a flat export holding several series)."""
    return folder / f"{SERIES_MARK}{uid}"


def parse_series_ref(path: Path) -> tuple[Path, str] | None:
    """``(folder, uid)`` for a series reference, else None."""
    if path.name.startswith(SERIES_MARK) and not path.exists() and path.parent.is_dir():
        return path.parent, path.name[len(SERIES_MARK):]
    return None


def series_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.lower() not in IGNORED_NAMES)


def _orientation(ds, path: Path) -> np.ndarray:
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6 or ds.get("ImagePositionPatient") is None:
        raise InvalidInputError(f"{path}: slice lacks ImageOrientationPatient/ImagePositionPatient, so its place "
                                "in the volume is unknown")
    return np.round(np.asarray([float(v) for v in iop]), 4)


class DicomSeriesReader(ImageReader):
    """Registered with the other readers; takes folders instead of suffixes."""

    folders = True

    @classmethod
    def available(cls) -> bool:
        return DicomReader.available()

    @classmethod
    def verify_suffix(cls, path: Path) -> bool:
        return False

    def read(self, path: Path) -> Image:
        """``path``: a folder holding one series, or ``FOLDER/@UID`` for one series among several."""
        ref = parse_series_ref(path)
        folder, wanted = ref if ref else (path, None)
        files, headers = [], []
        for f in series_files(folder):
            if f.is_symlink() and not f.resolve().is_relative_to(folder.resolve()):
                raise InvalidInputError(f"{f}: symlink points outside its series folder")
            try:
                header = pydicom.dcmread(f, stop_before_pixels=True)
            except InvalidDicomError:
                continue  # a note or thumbnail beside the slices; a truncated slice still fails below
            except (OSError, EOFError, ValueError) as e:
                if wanted is None:
                    raise InvalidInputError(f"{f}: DICOM slice is truncated or unreadable ({e})") from e
                continue  # in a mixed folder an unreadable file may belong to another series
            if wanted is not None and str(header.get("SeriesInstanceUID", "")) != wanted:
                continue
            files.append(f)
            headers.append(header)
        if not files:
            what = f"no slices of series {wanted}" if wanted else "no DICOM files; expected the slices of one series"
            raise InvalidInputError(f"{folder}: folder holds {what}")
        check_size(folder, (sum(int(h.get("NumberOfFrames", 1) or 1) for h in headers),
                            max(int(h.get("Rows", 0) or 0) for h in headers),
                            max(int(h.get("Columns", 0) or 0) for h in headers)))
        try:
            return assemble(path, files, headers)
        except InvalidInputError:
            raise
        except (TypeError, ValueError) as e:  # ImagePositionPatient "ab": named, never a traceback
            raise InvalidInputError(f"{folder.name}: a slice's geometry tags (ImageOrientationPatient, "
                                    f"ImagePositionPatient) are not numbers ({e})") from e


def assemble(folder: Path, files: list[Path], headers: list) -> Image:
    """The volume of one series from its files and their headers (read without pixels)."""
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(files) > 1 and "" in series:
        odd = next(f for f, h in zip(files, headers) if not h.get("SeriesInstanceUID"))
        raise InvalidInputError(f"{odd}: slice lacks SeriesInstanceUID (a truncated header?)")
    if len(series) > 1:
        raise InvalidInputError(f"{folder}: holds {len(series)} series; put each series in its own folder")
    if len(files) == 1:  # a single (possibly multi-frame) file is an image on its own
        return DicomReader().read(files[0])
    frames = [f.name for f, h in zip(files, headers) if int(h.get("NumberOfFrames", 1) or 1) > 1]
    if frames:
        raise InvalidInputError(f"{folder}: multi-frame file(s) {frames[:3]} inside a series of slices")
    orientations = [_orientation(h, f) for f, h in zip(files, headers)]
    distinct = Counter(tuple(float(v) for v in o) for o in orientations).most_common()
    if len(distinct) > 1:
        def text(d: tuple) -> str:
            return "(" + ", ".join(f"{v + 0.0:g}" for v in d) + ")"  # + 0.0: no "-0"
        odd = [f.name for f, o in zip(files, orientations) if tuple(float(v) for v in o) != distinct[0][0]]
        counts = ", ".join(f"{n} slice(s) at {text(d)}" for d, n in distinct)
        raise InvalidInputError(f"{folder}: mixed slice orientations ({counts}; odd ones: {', '.join(odd[:3])}); "
                                "one volume needs one orientation")
    sizes = {(int(h.get("Rows", 0)), int(h.get("Columns", 0))) for h in headers}
    if len(sizes) > 1:
        raise InvalidInputError(f"{folder}: slices have different sizes {sorted(sizes)}")
    row_dir, col_dir = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row_dir, col_dir)
    where = np.array([float(np.dot([float(v) for v in h.ImagePositionPatient], normal)) for h in headers])
    order = np.argsort(where, kind="stable")
    where = where[order]
    steps = np.diff(where)
    if np.any(steps < 1e-3):
        k = int(np.argmin(steps))
        raise InvalidInputError(f"{folder}: {files[order[k]].name} and {files[order[k + 1]].name} lie at the same "
                                f"position ({where[k]:.2f} mm along the slice normal)")
    step = float(np.median(steps))
    off = np.flatnonzero(np.abs(steps - step) > SPACING_TOLERANCE * step)
    if len(off):
        base = float(steps.min())  # with a gap, the true spacing is the smallest step, not the median
        k = int(off[np.argmax(steps[off])])
        ratio = steps[k] / base
        if round(ratio) >= 2 and abs(ratio - round(ratio)) <= SPACING_TOLERANCE * round(ratio):
            what = (f"gap of {steps[k]:.2f} mm where the spacing is {base:.2f} mm "
                    f"(about {round(ratio) - 1} slice(s) missing)")
        else:
            k = int(off[0])
            what = f"uneven spacing ({steps[k]:.2f} mm where the rest is {step:.2f} mm)"
        raise InvalidInputError(f"{folder}: {what} between {files[order[k]].name} ({where[k]:.2f} mm) and "
                                f"{files[order[k + 1]].name} ({where[k + 1]:.2f} mm)")
    slices = [pixels_of(open_dicom(files[i]), files[i]) for i in order]
    volume = np.stack(slices, axis=1)  # (C, D, H, W)
    return Image(array=np.ascontiguousarray(volume, np.float32),
                 spacing=(round(step, 4), *in_plane_spacing(headers[order[0]], files[order[0]])), source=str(folder),
                 window=voi_window(headers[order[0]]))
