from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from qdrant_compat import InputSpec
from qdrant_compat.data import ArrayImages, ImageFolder, load_npz, preprocess, write_image_folder
from qdrant_compat.errors import InvalidArgumentError

from ..conftest import OMNIGLOT


def test_preprocess_normalises_with_the_spec():
    spec = InputSpec(size=8, channels=1, mean=(0.5,), std=(0.25,))
    x = preprocess([np.full((8, 8), 255, np.uint8)], spec)
    assert x.shape == (1, 1, 8, 8) and np.allclose(x, (1.0 - 0.5) / 0.25)


def test_preprocess_center_crop_keeps_aspect():
    spec = InputSpec(size=8, channels=3, resize="center_crop")
    img = np.zeros((8, 16, 3), np.uint8)
    img[:, 4:12] = 255  # the central square is white
    x = preprocess([img], spec)
    assert x.shape == (1, 3, 8, 8) and np.allclose(x[0, 0], (1 - 0.485) / 0.229, atol=1e-5)


def test_image_folder_roundtrip(tmp_path):
    src = load_npz(OMNIGLOT, "test")
    paths = write_image_folder(src, tmp_path, range(12))
    folder = ImageFolder(tmp_path)
    assert len(folder) == 12 and len(paths) == 12
    assert np.array_equal(np.asarray(folder.get(0)), src.get(0))


def test_image_folder_errors(tmp_path):
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        ImageFolder(tmp_path / "nope")
    (tmp_path / "cls").mkdir()
    with pytest.raises(InvalidArgumentError, match="holds no images"):
        ImageFolder(tmp_path)


def test_arrays_reject_wrong_dtype():
    with pytest.raises(InvalidArgumentError, match="images must be uint8"):
        ArrayImages(np.zeros((2, 4, 4), np.float32), np.zeros(2))


def test_npz_unknown_layout(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(InvalidArgumentError, match="has neither x_train/y_train"):
        load_npz(tmp_path / "x.npz")


def test_grayscale_of_rgb_image():
    spec = InputSpec(size=8, channels=1, mean=(0.0,), std=(1.0,))
    img = Image.new("RGB", (8, 8), (255, 255, 255))
    assert np.allclose(preprocess([img], spec), 1.0)


def test_deep_images_are_scaled_not_clipped(tmp_path):
    """A float TIFF in [0, 1] used to be read as black and a 16-bit PNG as white (#20, finding 11): each must give
    the tensor of the same picture saved as 8 bits."""
    from qdrant_compat.data.images import load_image

    ramp8 = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))  # 16x16, 0..240
    spec = InputSpec(size=16, channels=1, mean=(0.0,), std=(1.0,))
    want = preprocess([ramp8], spec)
    Image.fromarray(ramp8.astype(np.float32) / 255.0, mode="F").save(tmp_path / "unit.tif")
    Image.fromarray(ramp8.astype(np.float32), mode="F").save(tmp_path / "bytes.tif")
    Image.fromarray(ramp8.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    for name in ("unit.tif", "bytes.tif", "deep.png"):
        img = load_image(tmp_path / name)
        assert img.mode in ("F", "I", "I;16"), (name, img.mode)  # Pillow really gives a deep image
        got = preprocess([img], spec)
        assert np.abs(got - want).max() <= 1 / 255 + 1e-6, name
    Image.fromarray(np.full((16, 16), np.nan, np.float32), mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(InvalidArgumentError, match="NaN or infinite pixel values"):
        preprocess([load_image(tmp_path / "nan.tif")], spec)
