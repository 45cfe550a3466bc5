"""``sample_image(name)``: real photos that ship inside scikit-image (no download)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from clrp_widgets.engine.errors import ConfigError


def _photo(name: str) -> Callable[[], np.ndarray]:
    import skimage.data

    if name == "motorcycle_left":
        return lambda: skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)


#: photo name -> what it shows (the ImageNet-like content to explain)
PHOTOS = {
    "chelsea": "a tabby cat",
    "coffee": "a cup of coffee on a saucer",
    "astronaut": "the astronaut Eileen Collins, with a flag",
    "rocket": "a rocket on its launch pad",
    "motorcycle_left": "a motorcycle in a room (left view of a stereo pair)",
}


def sample_image(name: str = "chelsea", *, as_array: bool = False) -> Image.Image | np.ndarray:
    """Return one of scikit-image's bundled RGB photos.

    Parameters
    ----------
    name : str
        ``"chelsea"`` (cat, 300×451), ``"coffee"`` (400×600), ``"astronaut"`` (512×512),
        ``"rocket"`` (427×640) or ``"motorcycle_left"`` (500×741).
    as_array : bool
        If True return a numpy ``(H, W, 3)`` uint8 array instead of a PIL image.

    Returns
    -------
    PIL.Image.Image or numpy.ndarray
        The photo in RGB; feed it to a bundle's ``preprocess``.
    """
    if name not in PHOTOS:
        raise ConfigError(f"unknown sample image {name!r}; choose one of {', '.join(PHOTOS)}.")
    array = np.ascontiguousarray(_photo(name)())
    return array if as_array else Image.fromarray(array)
