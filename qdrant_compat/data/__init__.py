"""Image sources (folders, arrays, npz bundles) and the one preprocessing shared by training and ONNX."""

from qdrant_compat.data.images import (
    ArrayImages,
    ImageFolder,
    ImageMissingError,
    ImageReader,
    ImageRefs,
    ImageSource,
    JpegBytesImages,
    LocalImages,
    load_image,
    load_npz,
    write_image_folder,
)
from qdrant_compat.data.lists import ImageList
from qdrant_compat.data.sources import open_source
from qdrant_compat.data.transforms import preprocess

__all__ = [
    "ArrayImages",
    "ImageFolder",
    "ImageList",
    "ImageMissingError",
    "ImageReader",
    "ImageRefs",
    "ImageSource",
    "JpegBytesImages",
    "LocalImages",
    "load_image",
    "load_npz",
    "open_source",
    "preprocess",
    "write_image_folder",
]
