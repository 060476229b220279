"""Fixtures shared by the test modules. Helpers that are not fixtures live in the
helper modules beside the tests (helpers, training_helpers, tiny_classifier,
shift_reference, benchmark_scripts, layers/reference*, zoo/utils); a test module
imports those, never another test module."""

import pytest


@pytest.fixture
def image_folder(tmp_path):
    """A tiny image-folder data set (`tests.training_helpers.write_image_folder`)
    in `tmp_path / "data"`: 3 classes of 8x8 grayscale PNGs."""
    # PIL is a test dependency of the image tests only.
    from tests.training_helpers import write_image_folder

    return write_image_folder(tmp_path / "data")
