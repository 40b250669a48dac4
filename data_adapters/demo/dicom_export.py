"""Write volumes as DICOM: an axial CT series of single-frame slices, as a scanner exports them.

Used to give the 3D demo a DICOM copy (a folder-of-studies cohort) and by the tests to write series with
known geometry. Stored values are uint16 with a rescale intercept, so ``HU = stored + intercept``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

__all__ = ["write_series", "export_studies"]


def write_series(folder: Path, volume: np.ndarray, *, spacing=(2.5, 0.8, 0.7), z0: float = -40.0,
                 series_uid: str = "1.2.826.0.1.3680043.8.498.77", names=None, slope: float = 1.0,
                 intercept: float = -1024.0, **tags) -> list[Path]:
    """Write ``volume`` ``(D, H, W)`` (stored values, uint16) as an axial CT series, one file per slice, named
    in shuffled order so that only the positions can sort them. ``tags`` set on every slice."""
    folder.mkdir(parents=True, exist_ok=True)
    depth = volume.shape[0]
    names = names or [f"IM{(7 * k + 3) % depth:04d}.dcm" for k in range(depth)]
    paths = []
    for k in range(depth):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = CTImageStorage, ExplicitVRLittleEndian
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(k)])  # same input, same file
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = series_uid, series_uid + ".1", "CT"
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -120.0, z0 + k * spacing[0]]
        ds.InstanceNumber = depth - k  # deliberately not the spatial order
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(volume[k], np.uint16).tobytes()
        for key, value in tags.items():
            setattr(ds, key, value)
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def export_studies(cases, out: Path, *, spacing: tuple[float, float, float], n: int,
                   progress=None) -> Path:
    """Write the first ``n`` of ``cases`` (volumes in HU) as a folder of DICOM studies, one
    ``<patient>/ct/`` series each, with made-up but realistic identifiers in the tags (patient name, id, birth
    date, accession): the identifiers Glassbox must never show."""
    from data_adapters.readers import read_image

    chosen = list(cases)[:n]
    for i, case in enumerate(chosen, start=1):
        hu = read_image(case.image).array[0]
        uid = generate_uid(entropy_srcs=["glassbox-demo", case.case_id])
        sex, age = case.attributes.get("sex") or "O", int(case.attributes.get("age") or 0)
        write_series(out / f"patient{i:03d}" / "ct", np.clip(np.round(hu + 1024), 0, 65535).astype(np.uint16),
                     spacing=spacing, series_uid=uid, PatientName=f"Demo^Patient{i:03d}",
                     PatientID=f"DEMO-{i:04d}", PatientBirthDate=f"{2026 - age}0101", AccessionNumber=f"ACC{i:06d}",
                     PatientSex=sex, PatientAge=f"{age:03d}Y", InstitutionName=f"Site {case.attributes['site']}",
                     Manufacturer=str(case.attributes.get("scanner", "")), StudyDescription="CT CHEST (demo)")
        if progress:
            progress(i, len(chosen))
    return out
